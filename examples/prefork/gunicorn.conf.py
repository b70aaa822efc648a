"""gunicorn settings for the prefork example: WORKERS processes, each its
own groupcache node, made after the fork (see app.py for why).

    gunicorn -c examples/prefork/gunicorn.conf.py app:application

Environment: PREFORK_HTTP (the service's address, default
127.0.0.1:8800), PREFORK_PEER_PORT (the first peer port, default 9800),
PREFORK_WORKERS (default 4).
"""

import os

import app  # noqa: F401 - the module is imported in the master, before fork

bind = os.environ.get("PREFORK_HTTP", "127.0.0.1:8800")
workers = app.WORKERS
worker_class = "sync"
# Do not import the app in the master and share it: every worker makes its
# own cache and pool in post_fork (preloading alone would be safe too: the
# master makes no cache or pool).
preload_app = False


def post_fork(server, worker):  # noqa: ANN001 - gunicorn's hook signature
    # Runs in the new worker process, right after fork(): the place to
    # create caches and pools, so that each worker is a node of its own.
    app.start_node(worker.log)
