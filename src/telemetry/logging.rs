//! Logging setup and the rules for what may be logged.
//!
//! Two formats: a human one on a terminal, and one plain `key=value` line per event otherwise
//! (journald, files), with the structured fields first and the message last.
//!
//! PHI rule: measurement values, patient identifiers and device addresses are never logged at
//! info level or above. Components log them, when at all, at debug or trace; `tests/no_phi_in_logs.rs`
//! runs the demo at info level and checks its output.

use std::fmt;
use std::io::IsTerminal;

use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::filter::Targets;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt as _;

use crate::config::{LogConfig, LogFormat};

/// Installs the global subscriber. Safe to call more than once (later calls are ignored), so
/// tests and commands can call it freely. Logs go to stderr; stdout is kept for command output.
pub fn init(config: &LogConfig) {
    let filter = parse_filter(&config.level)
        .unwrap_or_else(|_| Targets::new().with_default(tracing::Level::INFO));
    let human = match config.format {
        LogFormat::Human => true,
        LogFormat::Plain => false,
        LogFormat::Auto => std::io::stderr().is_terminal(),
    };
    // The fmt subscriber's own level filter defaults to INFO: open it fully, `filter` decides.
    let builder = tracing_subscriber::fmt()
        .with_max_level(tracing::level_filters::LevelFilter::TRACE)
        .with_writer(std::io::stderr);
    let _ = if human {
        builder
            .with_target(false)
            .compact()
            .finish()
            .with(filter)
            .try_init()
    } else {
        builder
            .with_ansi(false)
            .event_format(PlainFormat)
            .finish()
            .with(filter)
            .try_init()
    };
}

/// Parses a log filter: comma-separated `level` or `target=level` directives, e.g.
/// `info,vectorcare_gateway::upload=debug` (the `RUST_LOG` syntax without span/field filters).
///
/// `Targets` rather than `EnvFilter`: the same directives minus `[span{field}]` filters, without
/// the regex engine `EnvFilter` links in (binary size, docs/PERFORMANCE.md "Binary size").
/// `Targets` would take a span filter for a target name that matches nothing, so those are
/// refused here instead.
pub fn parse_filter(directives: &str) -> Result<Targets, String> {
    if directives.contains(['[', ']', '{', '}']) {
        return Err("span and field filters (`[span{field}]`) are not supported".into());
    }
    directives.parse().map_err(|e| format!("{e}"))
}

/// Logging for commands that run before any configuration is loaded.
pub fn init_default() {
    init(&LogConfig {
        level: std::env::var("VECTORCARE_LOG").unwrap_or_else(|_| "info".into()),
        format: LogFormat::Auto,
    });
}

/// `level=info target=vectorcare_gateway::upload entries=12 msg="bundle uploaded"`.
#[derive(Debug, Clone, Copy, Default)]
pub struct PlainFormat;

impl<S, N> FormatEvent<S, N> for PlainFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let meta = event.metadata();
        write!(
            writer,
            "level={} target={}",
            meta.level().as_str().to_ascii_lowercase(),
            meta.target()
        )?;
        let mut visitor = KeyValueVisitor::default();
        event.record(&mut visitor);
        for (key, value) in &visitor.fields {
            write!(writer, " {key}={}", quote(value))?;
        }
        if let Some(message) = &visitor.message {
            write!(writer, " msg={}", quote(message))?;
        }
        writeln!(writer)
    }
}

#[derive(Default)]
struct KeyValueVisitor {
    message: Option<String>,
    fields: Vec<(&'static str, String)>,
}

impl Visit for KeyValueVisitor {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, value.to_owned());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.put(field, format!("{value:?}"));
    }
}

impl KeyValueVisitor {
    fn put(&mut self, field: &Field, value: String) {
        if field.name() == "message" {
            self.message = Some(value);
        } else {
            self.fields.push((field.name(), value));
        }
    }
}

/// Quotes a value when it has spaces, quotes or `=`; escapes quotes and newlines.
fn quote(value: &str) -> String {
    let plain = !value.is_empty()
        && value
            .chars()
            .all(|c| !c.is_whitespace() && c != '"' && c != '=' && !c.is_control());
    if plain {
        value.to_owned()
    } else {
        let escaped = value
            .replace('\\', "\\\\")
            .replace('"', "\\\"")
            .replace('\n', "\\n");
        format!("\"{escaped}\"")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filter_directives() {
        use tracing::Level;
        let targets = parse_filter("info,vectorcare_gateway::upload=debug").expect("valid");
        assert!(targets.would_enable("vectorcare_gateway::upload::client", &Level::DEBUG));
        assert!(!targets.would_enable("vectorcare_gateway::queue", &Level::DEBUG));
        assert!(targets.would_enable("vectorcare_gateway::queue", &Level::INFO));
        let targets = parse_filter("WARN,rumqttd=off").expect("valid");
        assert!(!targets.would_enable("rumqttd::router", &Level::ERROR));
        assert!(!targets.would_enable("vectorcare_gateway", &Level::INFO));
        assert!(targets.would_enable("vectorcare_gateway", &Level::WARN));
        assert!(parse_filter("trace").is_ok());
        assert!(parse_filter("info,x=loud").is_err());
        assert!(parse_filter("info,[span{patient}]=debug").is_err());
    }

    #[test]
    fn quoting() {
        assert_eq!(quote("abc"), "abc");
        assert_eq!(quote("two words"), "\"two words\"");
        assert_eq!(quote("say \"hi\"\n"), "\"say \\\"hi\\\"\\n\"");
        assert_eq!(quote(""), "\"\"");
        assert_eq!(quote("a=b"), "\"a=b\"");
    }

    #[test]
    fn plain_lines_put_fields_first_and_message_last() {
        use std::sync::{Arc, Mutex};
        #[derive(Clone, Default)]
        struct Buffer(Arc<Mutex<Vec<u8>>>);
        impl std::io::Write for Buffer {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                self.0.lock().expect("test buffer").extend_from_slice(buf);
                Ok(buf.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let buffer = Buffer::default();
        let writer = buffer.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .event_format(PlainFormat)
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!(entries = 12, server = "primary", "bundle uploaded");
        });
        let text = String::from_utf8(buffer.0.lock().expect("test buffer").clone()).expect("utf8");
        assert_eq!(
            text,
            "level=info target=vectorcare_gateway::telemetry::logging::tests entries=12 server=primary msg=\"bundle uploaded\"\n"
        );
    }
}
