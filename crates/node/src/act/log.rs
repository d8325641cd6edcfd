//! The action log, in the OpenSVC agent's format: resource label, level, message.
//!
//! ```text
//! DRBD#0  INFO    drbdadm primary data
//! FS#1    INFO    mount -t ext3 -o defaults /dev/drbd0 /drbdsvc
//! ```
//!
//! Events go through `tracing` with the fields `service` and `resource`, so `--log-format json`
//! gets the same events as JSON lines (with the service name, which the text format leaves out as
//! the agent does).

use std::fmt;

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

use converge_core::manifest::{ContainerKind, Kind, ResourceId, Service, Spec};

/// The label a resource logs under, as the agent prints it: `DRBD#0`, `FS#1`, `VZ`, `LXC`,
/// `APP` (containers and apps carry their number only when it is not 0).
pub fn label(service: &Service, rid: ResourceId) -> String {
    let base = match rid.kind {
        Kind::Drbd | Kind::Fs => return rid.log_label(),
        Kind::Container => match service.resource(rid).map(|r| &r.spec) {
            Some(Spec::Container(c)) => match c.kind {
                ContainerKind::Vz(_) => "VZ",
                ContainerKind::Lxc(_) => "LXC",
            },
            _ => "CONTAINER",
        },
        Kind::App => "APP",
    };
    if rid.index == 0 {
        base.to_string()
    } else {
        format!("{base}#{}", rid.index)
    }
}

/// Where one resource's lines go.
#[derive(Debug, Clone)]
pub struct ResourceLog {
    pub service: String,
    pub label: String,
}

impl ResourceLog {
    pub fn new(service: &Service, rid: ResourceId) -> Self {
        ResourceLog {
            service: service.name.clone(),
            label: label(service, rid),
        }
    }

    pub fn info(&self, message: impl fmt::Display) {
        tracing::info!(service = %self.service, resource = %self.label, "{message}");
    }

    pub fn warn(&self, message: impl fmt::Display) {
        tracing::warn!(service = %self.service, resource = %self.label, "{message}");
    }

    pub fn error(&self, message: impl fmt::Display) {
        tracing::error!(service = %self.service, resource = %self.label, "{message}");
    }

    /// A program's output, as the agent shows it: `output:` then the text on its own lines.
    pub fn output(&self, text: &str) {
        let text = text.trim_end();
        if !text.is_empty() {
            self.info(format_args!("output:\n{text}"));
        }
    }
}

/// The text format: `LABEL   LEVEL   message`, columns 8 wide.
pub struct SeedFormat;

#[derive(Default)]
struct Fields {
    resource: Option<String>,
    service: Option<String>,
    message: String,
    /// Any other field, shown after the message as `name=value`: none is silently dropped.
    other: Vec<(&'static str, String)>,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.record(field, value.to_string());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.record(field, format!("{value:?}"));
    }
}

impl Fields {
    fn record(&mut self, field: &Field, value: String) {
        match field.name() {
            "resource" => self.resource = Some(value),
            "service" => self.service = Some(value),
            "message" => self.message = value,
            // Records of the `log` crate (from libraries) carry where they were written: the
            // library's source file is no use to an operator.
            name if name.starts_with("log.") => {}
            name => self.other.push((name.trim_start_matches("r#"), value)),
        }
    }
}

impl<S, N> FormatEvent<S, N> for SeedFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut fields = Fields::default();
        event.record(&mut fields);
        let level = match *event.metadata().level() {
            Level::ERROR => "ERROR",
            Level::WARN => "WARNING",
            Level::INFO => "INFO",
            Level::DEBUG => "DEBUG",
            Level::TRACE => "TRACE",
        };
        // Lines that belong to no resource (the run's own) are labelled by their service.
        let label = fields.resource.or(fields.service).unwrap_or_default();
        // Columns 8 wide as the agent's; a longer label still gets a space after it.
        let gap = if label.len() >= 8 { " " } else { "" };
        write!(writer, "{label:<8}{gap}{level:<8}{}", fields.message)?;
        for (name, value) in &fields.other {
            write!(writer, " {name}={value}")?;
        }
        writeln!(writer)
    }
}

/// Installs the log subscriber for a command that acts: text in the seed's format, or JSON
/// lines. `verbose` adds debug events.
pub fn init(json: bool, verbose: bool) {
    let level = if verbose { "debug" } else { "info" };
    // notify warns when it unwatches a directory that is gone, which is what a GitOps swap
    // does; converge handles the watcher's real errors itself.
    let filter = tracing_subscriber::EnvFilter::new(format!("{level},notify=error"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stdout);
    // A second init (tests calling the library twice) keeps the first subscriber.
    let _ = if json {
        builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init()
    } else {
        builder.event_format(SeedFormat).try_init()
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    /// Lines as the text format writes them, for events sent while `f` runs.
    fn text_lines(f: impl FnOnce()) -> String {
        use std::sync::{Arc, Mutex};
        let buffer: Arc<Mutex<Vec<u8>>> = Arc::default();
        let sink = Arc::clone(&buffer);
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(Level::DEBUG)
            .with_writer(move || SharedWriter(Arc::clone(&sink)))
            .event_format(SeedFormat)
            .finish();
        tracing::subscriber::with_default(subscriber, f);
        let bytes = buffer.lock().map(|b| b.clone()).unwrap_or_default();
        String::from_utf8_lossy(&bytes).into_owned()
    }

    struct SharedWriter(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for SharedWriter {
        fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
            if let Ok(mut buffer) = self.0.lock() {
                buffer.extend_from_slice(data);
            }
            Ok(data.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn text_lines_follow_the_agent_and_keep_every_field() {
        let text = text_lines(|| {
            tracing::info!(service = "web", resource = "FS#1", "mount done");
            tracing::warn!(service = "web", "failed; next try in 2s");
            tracing::warn!(path = "/etc/converge/manifests", "cannot resolve");
            tracing::debug!("manifests unchanged");
            tracing::info!(
                log.target = "notify::inotify",
                log.line = 529,
                "from a library"
            );
        });
        assert_eq!(
            text,
            "FS#1    INFO    mount done\n\
             web     WARNING failed; next try in 2s\n\
             \x20       WARNING cannot resolve path=/etc/converge/manifests\n\
             \x20       DEBUG   manifests unchanged\n\
             \x20       INFO    from a library\n"
        );
    }

    #[test]
    fn labels_follow_the_agent() {
        let service = converge_core::manifest::parse_manifest(
            Path::new("drbdsvc.yaml"),
            include_str!("../../../../manifests/drbdsvc.yaml"),
        )
        .expect("seed parses");
        assert_eq!(label(&service, ResourceId::new(Kind::Drbd, 0)), "DRBD#0");
        assert_eq!(label(&service, ResourceId::new(Kind::Fs, 1)), "FS#1");
        assert_eq!(label(&service, ResourceId::new(Kind::Container, 0)), "VZ");
        assert_eq!(label(&service, ResourceId::new(Kind::App, 0)), "APP");
        assert_eq!(label(&service, ResourceId::new(Kind::App, 2)), "APP#2");
    }
}
