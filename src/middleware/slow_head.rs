//! The contract's JSON 408 for a client too slow to send its request head.
//!
//! actix-http answers a head that is not complete within
//! `client_request_timeout` with a 408 of its own, an empty body written
//! before any request exists for middleware to see. So calcache keeps its own
//! watch over the first request head of each connection (the one actix
//! times): [`on_connect`] starts a timer holding a duplicate of the socket,
//! [`head_arrived`] (from the `request_head` middleware) tells it the head came;
//! if the timer fires first, it writes the contract's 408 JSON to the socket
//! and shuts it down, and actix, reading end-of-stream, drops the
//! connection. actix's own timer stays as a fallback at four times the
//! time (twice proved too close on a loaded machine: a busy worker ran the
//! watch late and actix's empty 408 won).
//! A slow body is the JSON reader's business (`routes::extract`).

use std::any::Any;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use actix_web::dev::{Extensions, ServiceRequest};
use tokio::sync::Notify;

/// The connection's watch: notified when its first request head has arrived
/// (`seen`, so later requests on the connection skip the notification).
#[derive(Clone)]
struct HeadWatch {
    arrived: Arc<Notify>,
    seen: Arc<AtomicBool>,
}

/// `HttpServer::on_connect`: starts the watch over the connection's first
/// request head. A socket that cannot be duplicated is left to actix's own
/// timer (and logged).
pub fn on_connect(timeout: Duration) -> impl Fn(&dyn Any, &mut Extensions) + Send + Sync + Clone + 'static {
    move |conn, ext| {
        let Some(stream) = conn.downcast_ref::<actix_web::rt::net::TcpStream>() else {
            return;
        };
        let socket = match socket2::SockRef::from(stream).try_clone() {
            Ok(socket) => socket,
            Err(e) => {
                tracing::warn!(error = %crate::error::Chain(&e), "cannot watch a request head; actix's own 408 applies");
                return;
            }
        };
        let arrived = Arc::new(Notify::new());
        ext.insert(HeadWatch { arrived: arrived.clone(), seen: Arc::new(AtomicBool::new(false)) });
        actix_web::rt::spawn(async move {
            tokio::select! {
                () = arrived.notified() => {}
                () = tokio::time::sleep(timeout) => time_out(&socket),
            }
        });
    }
}

/// Writes the 408 and ends the connection. Best effort: the socket is
/// non-blocking and idle (no request, so actix writes nothing to it), and a
/// client that has gone away gets nothing.
fn time_out(socket: &socket2::Socket) {
    // The contract's error body, as `ApiError::RequestTimeout` has it for a slow body.
    const BODY: &str = r#"{"error":{"code":"request_timeout","message":"the request head did not arrive in time"}}"#;
    let body = BODY.as_bytes();
    let mut answer = format!(
        "HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    answer.extend_from_slice(body);
    let sent = socket.send(&answer);
    let closed = socket.shutdown(std::net::Shutdown::Both);
    tracing::debug!(sent = sent.is_ok(), closed = closed.is_ok(), "slow request head: 408");
}

/// The request's head has arrived: its connection's watch ends (called by
/// the `request_head` middleware for every request).
pub fn head_arrived(req: &ServiceRequest) {
    if let Some(watch) = req.conn_data::<HeadWatch>()
        && !watch.seen.swap(true, Ordering::Relaxed)
    {
        // `notify_one` stores a permit if the timer task is not waiting yet.
        watch.arrived.notify_one();
    }
}
