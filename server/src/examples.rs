//! `dasher serve --examples`: builds the example policy plugins of this checkout
//! (`plugins/staged-rollout`, `ruleset-targeting`, `event-triage`, `approval-voting`) into
//! the server's plugin directory before it starts, so a fresh checkout runs with real plugins
//! loaded and hot-reloaded. With their default settings the first three decide what the
//! built-in defaults would (MONITOR, no extra rule sets; triage labels events, hides allowed
//! platform binaries as noise and proposes nothing); approval-voting approves users'
//! requests for a binary on their hosts after 3 distinct users and its Team ID fleet-wide
//! after 10 (never over an admin's block rule). Configure them under
//! `[plugins.plugin.NAME.settings]`.

use dasher_policy::tools::{self, BuildOptions};
use std::path::{Path, PathBuf};

/// The example plugins, in chain order.
pub const EXAMPLES: [&str; 4] = ["staged-rollout", "ruleset-targeting", "event-triage", "approval-voting"];

/// Where this build's example sources are (the checkout it was compiled from).
pub fn sources() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join("plugins")
}

/// Builds every example into `dir` (created), compiling in `build_dir`. Returns the component
/// paths. [`tools::build`] installs the `wasm32-unknown-unknown` target with rustup if it is missing.
pub fn build_into(dir: &Path, build_dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let src = sources();
    anyhow::ensure!(
        src.join(EXAMPLES[0]).join("Cargo.toml").is_file(),
        "the example plugin sources are not at {} (--examples needs the checkout dasher was built from)",
        src.display()
    );
    std::fs::create_dir_all(dir)?;
    let options = BuildOptions { target_dir: Some(build_dir.to_owned()), debug: false, progress: false };
    let mut built = Vec::new();
    for name in EXAMPLES {
        // Build beside the directory, then rename in: the watcher only ever sees whole files.
        let tmp = dir.join(format!(".{name}.wasm.tmp"));
        let report = tools::build(&src.join(name), Some(&tmp), &options)
            .map_err(|e| anyhow::anyhow!("building example plugin {name}: {e}"))?;
        let out = dir.join(format!("{name}.wasm"));
        std::fs::rename(&report.component, &out)?;
        tracing::info!(plugin = name, hash = %report.hash, "example plugin built");
        built.push(out);
    }
    Ok(built)
}
