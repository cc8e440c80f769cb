//! `plan validate` and the plan checks of `customize --plan` (docs/plan.md).

use std::fmt::Write;
use std::path::Path;

use anyhow::{Context, Result};
use rivet_protocol::plan::Plan;
use serde_json::Value;

/// Parses (JSON or YAML) and validates a plan exactly as the agent does.
pub fn parse(text: &str) -> Result<Plan> {
    Ok(Plan::from_document(text)?)
}

/// The plan document as the JSON the agent reads: a JSON document as it is, a YAML one
/// converted.
pub fn json_text(text: &str) -> Result<String> {
    if text.trim_start().starts_with('{') {
        return Ok(text.to_string());
    }
    let value = rivet_protocol::plan::document_value(text)?;
    Ok(serde_json::to_string_pretty(&value)?)
}

/// The local paths of the `file://` image URLs the plan's `write_image` steps read.
pub fn local_images(plan: &Plan) -> Vec<String> {
    plan.steps
        .iter()
        .filter(|s| s.step == "write_image")
        .filter_map(|s| s.args.get("image_info")?.get("urls")?.as_array().cloned())
        .flatten()
        .filter_map(|url| {
            url.as_str()
                .and_then(|u| u.strip_prefix("file://"))
                .map(str::to_string)
        })
        .collect()
}

/// A summary of a valid plan.
pub fn summary(plan: &Plan) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "plan {}: valid (version {}, sha256 {})",
        plan.name,
        plan.version,
        plan.digest()
    );
    if plan.machines.is_empty() {
        let _ = writeln!(out, "  machines: any machine that boots it");
    }
    for machine in &plan.machines {
        let matcher = serde_json::to_value(&machine.matcher).unwrap_or(Value::Null);
        let _ = writeln!(out, "  machine {}: match {matcher}", machine.name);
    }
    for (index, step) in plan.steps.iter().enumerate() {
        let flags = if step.ignore_failure {
            " (failure ignored)"
        } else {
            ""
        };
        let _ = writeln!(out, "  step {index}: {}{flags}", step.step);
    }
    let _ = writeln!(
        out,
        "  on failure: {:?}; rerun: {:?}",
        plan.on_failure, plan.rerun
    );
    if let Some(medium) = &plan.report.medium {
        let _ = writeln!(out, "  report medium: disk with serial {}", medium.serial);
    }
    if let Some(url) = &plan.report.url {
        let _ = writeln!(out, "  report URL: {url}");
    }
    out
}

/// `plan validate FILE`.
pub fn validate_file(path: &Path) -> Result<String> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let plan = parse(&text).with_context(|| format!("{} is not a usable plan", path.display()))?;
    Ok(summary(&plan))
}

#[cfg(test)]
mod tests {
    use super::*;

    const RACK: &str = include_str!("../../docs/plans/rack.json");
    const RACK_YAML: &str = include_str!("../../docs/plans/rack.yaml");

    #[test]
    fn a_yaml_plan_validates_and_becomes_the_same_json_plan() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rack.yaml");
        std::fs::write(&path, RACK_YAML).unwrap();
        let summary = validate_file(&path).unwrap();
        let from_json = parse(RACK).unwrap();
        assert!(
            summary.contains(&format!("sha256 {}", from_json.digest())),
            "the YAML plan's digest is the JSON plan's: {summary}"
        );
        let json = json_text(RACK_YAML).unwrap();
        assert_eq!(Plan::from_json(&json).unwrap(), from_json);
        assert_eq!(json_text(RACK).unwrap(), RACK, "JSON is kept as written");
    }

    #[test]
    fn the_rack_example_validates_and_is_summarized() {
        let plan = parse(RACK).unwrap();
        let text = summary(&plan);
        for expected in [
            "plan rack-a17-deploy: valid (version 1, sha256 ",
            "machine a17-u02: match {\"mac\":\"3c:ec:ef:00:17:02\",\"serial\":\"CZ2017A02\"}",
            "step 1: verify_wiring (failure ignored)",
            "step 5: poweroff",
            "on failure: PowerOff; rerun: Never",
            "report medium: disk with serial RIVET-REPORT-A17",
        ] {
            assert!(text.contains(expected), "{expected:?} missing in:\n{text}");
        }
        assert_eq!(local_images(&plan), ["/run/rivet/images/ubuntu-24.04.raw"]);
    }

    #[test]
    fn a_broken_plan_file_names_the_problem() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.json");
        std::fs::write(
            &path,
            r#"{"version": 1, "name": "x", "steps": [{"step": "reboot"}, {"step": "inspect"}]}"#,
        )
        .unwrap();
        let err = format!("{:#}", validate_file(&path).unwrap_err());
        assert!(
            err.contains("is not a usable plan") && err.contains("must be the last step"),
            "{err}"
        );
        let err = format!(
            "{:#}",
            validate_file(&dir.path().join("nope.json")).unwrap_err()
        );
        assert!(err.contains("reading"), "{err}");
    }
}
