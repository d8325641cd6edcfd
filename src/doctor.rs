//! `converge doctor`: loads the configuration (its `manifests` are the ones examined), has the node crate examine this node, and
//! prints the findings (grouped by area, then a summary line) or their JSON.

use std::io::Write;
use std::path::Path;

use converge_core::config::Config;
use converge_core::doctor::{Area, Report, Severity};
use converge_core::escape::Escaped;

/// Runs the doctor; the exit code is the report's (0 all good, 2 warnings, 1 an error).
pub fn run(config_path: Option<&Path>, json: bool) -> Result<u8, String> {
    let config = Config::load(config_path).map_err(|e| e.to_string())?;
    let dir = config.manifests.clone();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?;
    let report = runtime.block_on(converge_node::doctor::examine(&config, config_path, &dir));
    let mut out = std::io::stdout().lock();
    let written = if json {
        serde_json::to_writer_pretty(&mut out, &report)
            .map_err(std::io::Error::from)
            .and_then(|()| writeln!(out))
    } else {
        write_report(&mut out, &report)
    };
    // A closed pipe (`converge doctor | head`) is not an error worth a message.
    if let Err(e) = written
        && e.kind() != std::io::ErrorKind::BrokenPipe
    {
        return Err(format!("cannot write the report: {e}"));
    }
    Ok(report.exit_code)
}

fn word(severity: Severity) -> &'static str {
    match severity {
        Severity::Ok => "ok",
        Severity::Skipped => "skipped",
        Severity::Warn => "WARN",
        Severity::Error => "ERROR",
    }
}

/// One line per finding under its area's heading, `fix:` below a warning or an error, then
/// the summary line.
pub fn write_report(out: &mut impl Write, report: &Report) -> std::io::Result<()> {
    let mut area: Option<Area> = None;
    for f in &report.findings {
        if area != Some(f.area) {
            writeln!(out, "{}", f.area.as_str())?;
            area = Some(f.area);
        }
        writeln!(
            out,
            "  {:<8} {}: {}",
            word(f.severity),
            Escaped(&f.subject),
            Escaped(&f.message)
        )?;
        if let Some(fix) = &f.fix {
            writeln!(out, "  {:<8} fix: {}", "", Escaped(fix))?;
        }
    }
    let s = &report.summary;
    writeln!(
        out,
        "doctor: {} error(s), {} warning(s), {} ok, {} skipped",
        s.errors, s.warnings, s.ok, s.skipped
    )
}
