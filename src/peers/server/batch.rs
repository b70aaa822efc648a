//! The batch route: `POST {base_path}{group}` with a `GetManyRequest`
//! body, answered with a `GetManyResponse`: hits from the runtime thread,
//! misses in one worker call, values past the answer's budget marked
//! "too large" for the client to fetch alone.

use super::*;

/// The bytes of a batch answer beyond its values, at most, per key: a
/// `KeyResult`'s framing, expiry, status and error text (cut to
/// [`BATCH_ERROR_TEXT`] bytes). A client reads up to its
/// `max_response_bytes` plus this much per key.
pub(crate) const BATCH_OVERHEAD_PER_KEY: usize = 160;
/// The longest error text of one key in a batch answer.
const BATCH_ERROR_TEXT: usize = 128;
/// Values of one batch copied on the runtime thread, at most, all
/// together (hits beyond it are copied on the worker with the misses).
const INLINE_BATCH_BYTES: usize = INLINE_VALUE_BYTES;

/// The batch route: `POST {base_path}{group}`, a `GetManyRequest` body.
/// The hits are answered here, on the runtime thread, without blocking;
/// the misses go to one worker, in one `get_many_for_peer` call, never to
/// the runtime (a batch of loads may take long, and the inline path's
/// "fast group" measure is of single loads).
pub(super) async fn serve_batch(
    group: String,
    body: ReqBody,
    ctx: &ServeCtx,
    slot: &Slot,
) -> Response<Chunks> {
    let cfg = &ctx.cfg;
    let Some(svc) = ctx.groups.lookup(&group) else {
        log::debug!(
            "peer server: a peer asked for a batch of cache {group:?}, which this node does not have"
        );
        return text(StatusCode::NOT_FOUND, &format!("no such group: {group}"));
    };
    let (body, held) = match body.read(ctx, slot).await {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    // The keys are slices of the body (no copy): its reservation is held
    // until the answer is built.
    let m = match GetManyRequest::decode(body) {
        Ok(m) => m,
        Err(e) => return text(StatusCode::BAD_REQUEST, &format!("decoding GetManyRequest: {e}")),
    };
    if !m.group.is_empty() && m.group != group.as_bytes() {
        return text(
            StatusCode::BAD_REQUEST,
            "GetManyRequest group differs from the path's",
        );
    }
    if m.keys.len() > cfg.max_batch_keys {
        return text(
            StatusCode::BAD_REQUEST,
            &format!(
                "a batch of {} keys: this node takes at most {} (max_batch_keys)",
                m.keys.len(),
                cfg.max_batch_keys
            ),
        );
    }
    let budget = match m.max_response_bytes {
        0 => cfg.max_body_bytes,
        n => usize::try_from(n).unwrap_or(usize::MAX).min(cfg.max_body_bytes),
    };
    let keys = m.keys;
    svc.count_batch();
    // The hits, here (short, non-blocking engine calls).
    let mut results: Vec<Option<Result<PeerValue, Error>>> = vec![None; keys.len()];
    let hits = inline(|| {
        let mut copied = 0usize;
        for (k, r) in keys.iter().zip(results.iter_mut()) {
            match svc.get_cached_for_peer(k, INLINE_BATCH_BYTES - copied) {
                Ok(Some(v)) => {
                    copied += v.value.len();
                    *r = Some(Ok(v));
                }
                Ok(None) => {}
                Err(e) => *r = Some(Err(e)),
            }
        }
    });
    if let Err(resp) = hits {
        return resp;
    }
    // The misses, on a worker, in one call.
    let misses: Vec<usize> = (0..keys.len()).filter(|&i| results[i].is_none()).collect();
    if !misses.is_empty() {
        let miss_keys: Vec<Bytes> = misses.iter().map(|&i| keys[i].clone()).collect();
        let svc = svc.clone();
        let loaded = on_worker(ctx, move || {
            let refs: Vec<&[u8]> = miss_keys.iter().map(|k| &k[..]).collect();
            svc.get_many_for_peer(&refs)
        })
        .await;
        match loaded {
            Ok(loaded) if loaded.len() == misses.len() => {
                for (i, r) in misses.into_iter().zip(loaded) {
                    results[i] = Some(r);
                }
            }
            Ok(loaded) => {
                log::error!(
                    "peer server: get_many_for_peer answered {} results for {} keys (a bug)",
                    loaded.len(),
                    misses.len()
                );
                return text(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "the engine answered a batch wrongly",
                );
            }
            Err(resp) => return resp,
        }
    }
    drop(keys);
    drop(held);
    let results: Vec<Result<PeerValue, Error>> = results
        .into_iter()
        .map(|r| r.unwrap_or(Err(Error::NotFound)))
        .collect();
    // One line per batch, not per key.
    let mut failed = results
        .iter()
        .filter_map(|r| r.as_ref().err())
        .filter(|e| !matches!(e, Error::NotFound));
    if let Some(first) = failed.next() {
        log::warn!(
            "peer server: answering a batch for cache {group:?}: {} of {} keys failed, the first: {first}",
            1 + failed.count(),
            results.len()
        );
    }
    Response::builder()
        .header(header::CONTENT_TYPE, PROTOBUF)
        .body(batch_response_body(results, budget))
        .expect("valid response")
}

/// `s` cut to at most `max` bytes, at a character boundary.
fn cut(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut at = max;
        while !s.is_char_boundary(at) {
            at -= 1;
        }
        s.truncate(at);
    }
    s
}

/// Encodes a `GetManyResponse`. Values whose bytes would take the values'
/// total past `budget` are answered [`STATUS_TOO_LARGE`] instead (the
/// client fetches those one by one); the rest of the answer is at most
/// [`BATCH_OVERHEAD_PER_KEY`] bytes a key. Values up to [`COPY_LIMIT`] are
/// copied into the encoding; larger ones are sent from their own bytes.
fn batch_response_body(results: Vec<Result<PeerValue, Error>>, budget: usize) -> Chunks {
    use prost::encoding::{encode_varint, encoded_len_varint};
    let mut parts = Vec::new();
    let mut cur = BytesMut::with_capacity(64 * results.len().min(1024));
    let mut values = 0usize;
    for r in results {
        let (value, rest) = match r {
            Ok(v) if values.saturating_add(v.value.len()) <= budget => {
                values += v.value.len();
                let rest = KeyResult {
                    expire: v.expire_unix_nanos.filter(|&e| e > 0).unwrap_or(0),
                    ..Default::default()
                };
                (v.value, rest)
            }
            Ok(_) => (
                Bytes::new(),
                KeyResult {
                    status: STATUS_TOO_LARGE,
                    error: "over the batch answer's size; fetch it alone".into(),
                    ..Default::default()
                },
            ),
            Err(e) => {
                let (status, error) = error_status(&e);
                (
                    Bytes::new(),
                    KeyResult {
                        status: status.as_u16() as u32,
                        error: cut(error, BATCH_ERROR_TEXT),
                        ..Default::default()
                    },
                )
            }
        };
        let value_field = if value.is_empty() {
            0
        } else {
            1 + encoded_len_varint(value.len() as u64) + value.len()
        };
        let inner = value_field + rest.encoded_len();
        cur.put_u8(0x0a); // GetManyResponse.results, length-delimited
        encode_varint(inner as u64, &mut cur);
        if !value.is_empty() {
            cur.put_u8(0x0a); // KeyResult.value
            encode_varint(value.len() as u64, &mut cur);
            if value.len() <= COPY_LIMIT {
                cur.put_slice(&value);
            } else {
                parts.push(cur.split().freeze());
                parts.push(value);
            }
        }
        rest.encode(&mut cur).expect("BytesMut grows");
    }
    parts.push(cur.freeze());
    Chunks::many(parts)
}
