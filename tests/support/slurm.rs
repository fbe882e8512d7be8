//! The real single-node Slurm cluster of `scripts/slurm-local.sh`, for the
//! executor tests. `scripts/test.sh` starts it; a test started by plain
//! `cargo test` starts it too where it can (as root), and otherwise skips
//! with a loud message.

use std::path::Path;
use std::process::Command;
use std::sync::OnceLock;

/// Whether the cluster answers; starts it once if not.
pub fn cluster() -> bool {
    static UP: OnceLock<bool> = OnceLock::new();
    *UP.get_or_init(|| {
        if answering() {
            return true;
        }
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/slurm-local.sh");
        let started = Command::new(&script)
            .output()
            .map(|o| {
                if !o.status.success() {
                    eprintln!("{}", String::from_utf8_lossy(&o.stderr));
                }
                o.status.success()
            })
            .unwrap_or(false);
        if !(started && answering()) {
            eprintln!(
                "\n*** SKIPPING the Slurm tests: no Slurm cluster answers here and {} could not start one (it needs root and apt-get) ***\n",
                script.display()
            );
            return false;
        }
        true
    })
}

fn answering() -> bool {
    Command::new("scontrol")
        .arg("ping")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("is UP"))
}

/// `base` made a stage name no other test process uses. Tests find their
/// jobs in the queue by name, and the cluster is shared: a second test run
/// at the same time (another checkout's) must not find, or cancel, this
/// one's jobs.
pub fn own_stage(base: &str) -> String {
    format!("{base}_{}", std::process::id())
}

/// This user's jobs in the queue whose name is `vgmake-<stage>`: `(id, state)`.
pub fn jobs_of(stage: &str) -> Vec<(String, String)> {
    let out = Command::new("squeue")
        .args([
            "-h",
            "-r",
            "--me",
            "-n",
            &format!("vgmake-{stage}"),
            "-o",
            "%i %T",
        ])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let (id, state) = l.split_once(' ')?;
            Some((id.to_string(), state.to_string()))
        })
        .collect()
}
