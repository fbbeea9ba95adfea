//! Logging: human-readable locally, JSON in production. `RUST_LOG` wins over
//! `log.filter` when set.

use std::fmt::{self, Write as _};

use tracing::field::{Field, Visit};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::FormattedFields;
use tracing_subscriber::fmt::format::{FmtSpan, FormatFields, Writer};

use crate::config::{LogFormat, LogSettings};

pub fn init(settings: &LogSettings) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&settings.filter));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_span_events(FmtSpan::NONE);
    // A second init (tests) is not an error worth failing over.
    let _ = match settings.format {
        LogFormat::Json => {
            builder.json().flatten_event(true).with_current_span(true).fmt_fields(JsonSpanFields).try_init()
        }
        LogFormat::Pretty => builder.compact().try_init(),
    };
}

/// The per-request root span: the request id, method and path. Every event
/// of the request carries it, so a warning deep in the cache can be tied to
/// its request.
///
/// Deliberately lean. The fmt layer formats a span's fields into a string
/// (JSON in production) when the span is created, whether or not anything is
/// logged inside it, and formats them all again on every `record`.
/// tracing-actix-web's default span has a dozen fields (host, user agent,
/// client address, …) and records the status at the end; on the feed's hit
/// path that was a third of a request's CPU time at `info` (BENCHMARKS.md).
/// Nothing is recorded at the end: no event follows the response, so a
/// recorded status would never be printed, and failures are logged as events
/// with their cause chain where they are answered (`error.rs`). The spans
/// inside the hit path (`feed`, `cache.feed`, `authenticate`,
/// `cache.session_lookup`) are `debug` for the same reason;
/// `log.filter = "info,calcache=debug"` brings them back.
pub struct RootSpan;

impl tracing_actix_web::RootSpanBuilder for RootSpan {
    fn on_request_start(request: &actix_web::dev::ServiceRequest) -> tracing::Span {
        use actix_web::HttpMessage as _;
        // The balancer's id when it sends one (nginx: `$request_id`, also in
        // its access log), so both logs of one request share it.
        let forwarded =
            request.headers().get("x-request-id").and_then(|v| v.to_str().ok()).filter(|id| is_request_id(id));
        let generated = request.extensions().get::<tracing_actix_web::RequestId>().copied();
        // Encoded here rather than through `Display`: the formatting
        // machinery costs several times more than the encoding.
        let mut buffer = uuid::Uuid::encode_buffer();
        let id: &str = match (forwarded, &generated) {
            (Some(id), _) => id,
            (None, Some(r)) => r.hyphenated().encode_lower(&mut buffer),
            (None, None) => "",
        };
        tracing::info_span!("request", request_id = id, method = request.method().as_str(), path = request.path())
    }

    fn on_request_end<B: actix_web::body::MessageBody>(
        _span: tracing::Span,
        outcome: &Result<actix_web::dev::ServiceResponse<B>, actix_web::Error>,
    ) {
        // An error that never became a response (our handlers' errors do,
        // and are logged there).
        if let Err(e) = outcome {
            tracing::error!(status = e.as_response_error().status_code().as_u16(), error = %e, "request failed");
        }
    }
}

/// An id worth logging: short, and letters, digits, `-` and `_` only.
fn is_request_id(id: &str) -> bool {
    (1..=64).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Formats span fields as the JSON object the JSON event formatter expects
/// (`{"request_id":"…","method":"GET"}`), written straight into the span's
/// buffer.
///
/// tracing-subscriber's own `JsonFields` builds a map of `serde_json::Value`s
/// per span and serializes it through a UTF-8-checking adaptor, and parses
/// and re-serializes the whole object on every `record`: on the feed's hit
/// path, the root span alone was a tenth of a request's instructions
/// (BENCHMARKS.md). Events are still formatted by tracing-subscriber.
#[derive(Debug, Default)]
pub struct JsonSpanFields;

impl<'writer> FormatFields<'writer> for JsonSpanFields {
    fn format_fields<R: RecordFields>(&self, mut writer: Writer<'writer>, fields: R) -> fmt::Result {
        let mut object = JsonObject::default();
        fields.record(&mut object);
        writer.write_str(&object.finish())
    }

    /// Appends to the object: `{"a":1}` + `b=2` is `{"a":1,"b":2}`. A field
    /// recorded twice appears twice; JSON readers (the event formatter
    /// included) keep the last.
    fn add_fields(
        &self,
        current: &'writer mut FormattedFields<Self>,
        fields: &tracing::span::Record<'_>,
    ) -> fmt::Result {
        let mut object = JsonObject::default();
        fields.record(&mut object);
        if object.out.is_empty() {
            return Ok(());
        }
        if current.fields.ends_with('}') && current.fields.len() > 2 {
            current.fields.pop();
            current.fields.push(',');
            current.fields.push_str(&object.out);
            current.fields.push('}');
            Ok(())
        } else {
            current.fields.clear();
            current.fields.push_str(&object.finish());
            Ok(())
        }
    }
}

/// `"name":value` pairs, comma-separated, without the braces until `finish`.
#[derive(Default)]
struct JsonObject {
    out: String,
}

impl JsonObject {
    fn key(&mut self, field: &Field) {
        if !self.out.is_empty() {
            self.out.push(',');
        }
        push_json_string(&mut self.out, field.name());
        self.out.push(':');
    }

    fn finish(self) -> String {
        let mut s = String::with_capacity(self.out.len() + 2);
        s.push('{');
        s.push_str(&self.out);
        s.push('}');
        s
    }
}

impl Visit for JsonObject {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.key(field);
        push_json_string(&mut self.out, value);
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.key(field);
        self.out.push_str(itoa::Buffer::new().format(value));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.key(field);
        self.out.push_str(itoa::Buffer::new().format(value));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.key(field);
        self.out.push_str(if value { "true" } else { "false" });
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.key(field);
        if value.is_finite() {
            let _ = write!(self.out, "{value}");
        } else {
            self.out.push_str("null");
        }
    }

    /// `%display` and `?debug` values: as strings.
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.key(field);
        let mut text = String::new();
        let _ = write!(text, "{value:?}");
        push_json_string(&mut self.out, &text);
    }
}

/// A JSON string literal (RFC 8259 §7): quotes, backslashes and control
/// characters escaped, everything else as is.
fn push_json_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if u32::from(c) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use std::io;
    use std::sync::{Arc, Mutex};

    use tracing_subscriber::fmt::MakeWriter;

    use super::*;

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().map_err(|_| io::Error::other("poisoned"))?.extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Captured {
        type Writer = Self;
        fn make_writer(&'a self) -> Self {
            self.clone()
        }
    }

    #[test]
    fn forwarded_request_ids_are_used_only_when_plain() {
        assert!(is_request_id("4f9c2a5e7d8b1c3e5f7a9b0c2d4e6f81"));
        assert!(is_request_id("0b2a6c1e-97e5-4fd6-9e44-6f3f4a2b1c0d"));
        for bad in ["", "x".repeat(65).as_str(), "a b", "id\n{\"evil\":1}", "ünï"] {
            assert!(!is_request_id(bad), "{bad:?}");
        }
    }

    #[test]
    fn span_fields_reach_events_as_json_whatever_their_content() {
        let captured = Captured::default();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(captured.clone())
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .fmt_fields(JsonSpanFields)
            .finish();
        let nasty = "quote \" backslash \\ newline \n tab \t bell \u{7} é 🗓";
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!(
                "request",
                text = nasty,
                n = 42u64,
                neg = -7i64,
                yes = true,
                shown = %nasty,
                later = tracing::field::Empty
            );
            let _in = span.enter();
            span.record("later", 1.5f64);
            span.record("n", 43u64);
            tracing::info!(x = 1, "inside");
        });
        let bytes = captured.0.lock().map(|b| b.clone()).unwrap_or_default();
        let text = String::from_utf8(bytes).unwrap_or_else(|e| panic!("{e}"));
        let line = text.lines().next().unwrap_or_else(|| panic!("no event logged"));
        let event: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        let span = &event["span"];
        assert_eq!(span["text"], nasty, "{line}");
        assert_eq!(span["shown"], nasty);
        assert_eq!(span["n"], 43);
        assert_eq!(span["neg"], -7);
        assert_eq!(span["yes"], true);
        assert_eq!(span["later"], 1.5);
        assert_eq!(span["name"], "request");
        assert_eq!(event["message"], "inside");
    }
}
