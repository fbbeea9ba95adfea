//! Logging: human-readable locally, JSON in production. `RUST_LOG` wins over
//! `log.filter` when set.

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::FmtSpan;

use crate::config::{LogFormat, LogSettings};

pub fn init(settings: &LogSettings) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&settings.filter));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_span_events(FmtSpan::NONE);
    // A second init (tests) is not an error worth failing over.
    let _ = match settings.format {
        LogFormat::Json => builder.json().flatten_event(true).with_current_span(true).try_init(),
        LogFormat::Pretty => builder.compact().try_init(),
    };
}

/// The per-request root span: the request id, method, path and, at the end,
/// status. Every event of the request carries it, so a warning deep in the
/// cache can be tied to its request.
///
/// Deliberately lean: tracing-actix-web's default span has a dozen fields
/// (host, user agent, client address, …), and the fmt layer formats all of
/// them into a string for every request at `info`, whether or not anything
/// is logged — on the feed's hit path that was a third of the CPU time of a
/// request (BENCHMARKS.md). The spans inside the hit path (`service::feed`,
/// `cache.feed`, `authenticate`, `cache.session_lookup`) are `debug` for the
/// same reason: `log.filter = "info,calcache=debug"` brings them back.
pub struct RootSpan;

impl tracing_actix_web::RootSpanBuilder for RootSpan {
    fn on_request_start(request: &actix_web::dev::ServiceRequest) -> tracing::Span {
        use actix_web::HttpMessage as _;
        let request_id = request.extensions().get::<tracing_actix_web::RequestId>().copied();
        tracing::info_span!(
            "request",
            request_id = request_id.map(tracing::field::display),
            method = %request.method(),
            path = request.path(),
            status = tracing::field::Empty,
            error = tracing::field::Empty,
        )
    }

    fn on_request_end<B: actix_web::body::MessageBody>(
        span: tracing::Span,
        outcome: &Result<actix_web::dev::ServiceResponse<B>, actix_web::Error>,
    ) {
        let (status, error) = match outcome {
            Ok(res) => (res.status(), res.response().error()),
            Err(e) => (e.as_response_error().status_code(), Some(e)),
        };
        span.record("status", status.as_u16());
        // 5xx bodies are generic; the cause goes to the log, here.
        if status.is_server_error()
            && let Some(e) = error
        {
            span.record("error", tracing::field::display(e));
        }
    }
}
