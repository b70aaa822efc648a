"""gunicorn settings for one "host" of the workers example: WORKERS_COUNT
processes, each its own groupcache node, made after the fork (app.py says
why and how they find each other through DNS).

    WORKERS_HOST=127.0.3.201 gunicorn -c gunicorn.conf.py app:application
"""

import app

bind = "%s:%d" % (app.HOST, app.HTTP_PORT)
workers = app.WORKERS
worker_class = "sync"
preload_app = False


def post_fork(server, worker):  # noqa: ANN001 - gunicorn's hook signature
    # In the new worker process, right after fork(): this worker's node.
    app.start_node(worker.log)
