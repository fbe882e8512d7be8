//! Checkpoints: weights, AdamW moments, step, RNG state and the loss curve so
//! far, in one safetensors file (the rest as JSON in its metadata), written
//! atomically (temp file + rename) and sealed (`vgmake_api::seal`): a
//! checkpoint whose bytes do not match its seal is dropped, never resumed.
//!
//! A run of `steps` steps keeps its latest checkpoint in
//! `run-{steps}-at-{step}.safetensors` inside the stage's state folder
//! (shared by runs that differ only in `steps`, `checkpoint_every` or
//! `threads`). Each checkpoint gets a new name and the older ones go only
//! once it is sealed ([`save_latest`]), so a kill at any moment leaves at
//! least the last sealed checkpoint to resume from. See [`choose_resume`].

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};

use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use serde::{Deserialize, Serialize};

use super::curve::CurveRow;
use crate::api::seal::{self, SealError};

/// Why a checkpoint cannot be resumed.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(transparent)]
    Seal(#[from] SealError),
    #[error("reading {0}: {1}")]
    Io(String, std::io::Error),
    #[error("{0}: {1}")]
    Format(String, String),
}

/// One named f32 array.
#[derive(Debug, Clone, PartialEq)]
pub struct Array {
    pub name: String,
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

/// Everything besides the arrays.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Meta {
    /// Steps done.
    pub step: usize,
    /// The `steps` of the run that wrote it (its schedule).
    pub schedule_steps: usize,
    pub rng: [u64; 4],
    pub adam_t: u64,
    pub curve: Vec<CurveRow>,
    /// Training tokens and seconds over every run that led here (for tokens/s).
    #[serde(default)]
    pub tokens_trained: u64,
    #[serde(default)]
    pub train_seconds: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Checkpoint {
    pub meta: Meta,
    pub params: Vec<Array>,
    pub adam_m: Vec<Array>,
    pub adam_v: Vec<Array>,
}

const META_KEY: &str = "vgmake_train";

/// The file of the checkpoint after `step` steps of a run of `steps`.
pub fn checkpoint_file(dir: &Path, steps: usize, step: usize) -> PathBuf {
    dir.join(format!("run-{steps}-at-{step}.safetensors"))
}

/// A checkpoint file found in a state folder, by its name.
#[derive(Debug)]
struct Found {
    path: PathBuf,
    /// The `steps` of the run that wrote it.
    steps: usize,
    /// Steps done; `None` for `run-{steps}.safetensors`, the one-file-per-run
    /// name older vgmake wrote (the step is read from its metadata instead).
    step: Option<usize>,
}

/// `(steps, step)` of a checkpoint's file name (see [`Found`]).
fn parse_name(name: &str) -> Option<(usize, Option<usize>)> {
    let stem = name.strip_prefix("run-")?.strip_suffix(".safetensors")?;
    match stem.split_once("-at-") {
        Some((steps, step)) => Some((steps.parse().ok()?, Some(step.parse().ok()?))),
        None => Some((stem.parse().ok()?, None)),
    }
}

fn found_checkpoints(dir: &Path) -> Vec<Found> {
    let mut found: Vec<Found> = fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let (steps, step) = parse_name(e.file_name().to_str()?)?;
            Some(Found {
                path: e.path(),
                steps,
                step,
            })
        })
        .collect();
    // Longest run first, latest step first within a run.
    found.sort_by_key(|f| std::cmp::Reverse((f.steps, f.step)));
    found
}

fn remove_checkpoint(path: &Path) {
    let _ = seal::unseal(path);
    let _ = fs::remove_file(path);
}

/// Saves `c` as its run's latest checkpoint, then removes the run's older
/// ones (and any left unsealed, or as temp files, by a kill): the previous
/// checkpoint stays until this one is sealed. A sealed checkpoint of the
/// same step is kept as it is (training is deterministic: the same bytes),
/// never unsealed and rewritten.
pub fn save_latest(dir: &Path, c: &Checkpoint) -> Result<(), String> {
    let steps = c.meta.schedule_steps;
    let path = checkpoint_file(dir, steps, c.meta.step);
    if seal::check(&path).is_err() {
        c.save(&path)?;
    }
    let saved = Found {
        path,
        steps,
        step: Some(c.meta.step),
    };
    remove_older(dir, steps, &saved, false);
    Ok(())
}

/// Removes run `steps`' checkpoints other than `keep` (with `only_older`,
/// only those of fewer steps done), and the temp files of its saves that a
/// kill left (`….tmp-<pid>`, `….b3.tmp-<pid>`).
fn remove_older(dir: &Path, steps: usize, keep: &Found, only_older: bool) {
    let temp_prefix = format!("run-{steps}-at-");
    for e in fs::read_dir(dir).into_iter().flatten().flatten() {
        let (name, path) = (e.file_name(), e.path());
        let Some(name) = name.to_str() else { continue };
        if name.starts_with(&temp_prefix) && name.contains(".tmp-") {
            let _ = fs::remove_file(&path);
        } else if parse_name(name).is_some_and(|(run, step)| {
            run == steps && path != keep.path && (!only_older || step < keep.step)
        }) {
            remove_checkpoint(&path);
        }
    }
}

impl Checkpoint {
    pub fn save(&self, path: &Path) -> Result<(), String> {
        let groups = [
            ("param", &self.params),
            ("adam_m", &self.adam_m),
            ("adam_v", &self.adam_v),
        ];
        let bytes: Vec<(String, &Array, Vec<u8>)> = groups
            .iter()
            .flat_map(|(group, arrays)| {
                arrays.iter().map(move |a| {
                    let raw = a.data.iter().flat_map(|v| v.to_le_bytes()).collect();
                    (format!("{group}/{}", a.name), a, raw)
                })
            })
            .collect();
        let views = bytes
            .iter()
            .map(|(name, a, raw)| {
                TensorView::new(Dtype::F32, a.shape.clone(), raw)
                    .map(|v| (name.clone(), v))
                    .map_err(|e| e.to_string())
            })
            .collect::<Result<Vec<_>, _>>()?;
        let meta = serde_json::to_string(&self.meta).map_err(|e| e.to_string())?;
        let info = HashMap::from([(META_KEY.to_string(), meta)]);
        let data = safetensors::serialize(views, Some(info)).map_err(|e| e.to_string())?;
        let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
        // The seal (its hash, beside it) goes first and comes back last: a
        // crash in between leaves a file that no resume trusts.
        let write = || -> std::io::Result<()> {
            fs::write(&tmp, &data)?;
            fs::File::open(&tmp)?.sync_all()?;
            seal::unseal(path)?;
            fs::rename(&tmp, path)?;
            seal::seal(path)
        };
        write().map_err(|e| {
            let _ = fs::remove_file(&tmp);
            format!("writing {}: {e}", path.display())
        })
    }

    /// Reads a checkpoint after checking it against its seal; any damage
    /// is an error message, never a panic.
    pub fn load(path: &Path) -> Result<Checkpoint, LoadError> {
        seal::check(path)?;
        let fail = |what: String| LoadError::Format(path.display().to_string(), what);
        let bytes = fs::read(path).map_err(|e| LoadError::Io(path.display().to_string(), e))?;
        let (_, header) = SafeTensors::read_metadata(&bytes).map_err(|e| fail(e.to_string()))?;
        let meta_json = header
            .metadata()
            .as_ref()
            .and_then(|m| m.get(META_KEY))
            .ok_or_else(|| fail("no training metadata".into()))?;
        let meta: Meta = serde_json::from_str(meta_json).map_err(|e| fail(e.to_string()))?;
        let st = SafeTensors::deserialize(&bytes).map_err(|e| fail(e.to_string()))?;
        let mut groups: HashMap<&str, Vec<Array>> = HashMap::new();
        let mut names = st.names();
        names.sort();
        for full in names {
            let view = st.tensor(full).map_err(|e| fail(e.to_string()))?;
            if view.dtype() != Dtype::F32 {
                return Err(fail(format!("`{full}` is not f32")));
            }
            let (group, name) = full
                .split_once('/')
                .ok_or_else(|| fail(format!("unexpected tensor `{full}`")))?;
            let data = view
                .data()
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
                .collect();
            let array = Array {
                name: name.to_string(),
                shape: view.shape().to_vec(),
                data,
            };
            groups.entry(group).or_default().push(array);
        }
        let mut take = |g: &str| groups.remove(g).unwrap_or_default();
        Ok(Checkpoint {
            params: take("param"),
            adam_m: take("adam_m"),
            adam_v: take("adam_v"),
            meta,
        })
    }
}

/// How a run starts.
#[derive(Debug)]
pub enum Resume {
    Fresh,
    /// The same run (same `steps`), interrupted or finished: continue it.
    Continue(Checkpoint),
    /// A finished shorter run: continue from its end under the new schedule.
    Extend(Checkpoint),
}

/// Picks the checkpoint to start from for a run of `steps` steps: this
/// run's own one, else the longest finished run shorter than `steps`, else
/// none. A damaged file is reported through `log` and skipped.
pub fn choose_resume(dir: &Path, steps: usize, log: &dyn Fn(&str)) -> Resume {
    let load = |found: &Found| match Checkpoint::load(&found.path) {
        Ok(c) => Some(c),
        // A save cut short between its rename and its seal; the run's
        // previous checkpoint is still there.
        Err(LoadError::Seal(SealError::Unsealed(_))) if found.step.is_some() => {
            remove_checkpoint(&found.path);
            None
        }
        // Unreadable now is not damaged: kept for the next run.
        Err(e @ (LoadError::Seal(SealError::Io(..)) | LoadError::Io(..))) => {
            log(&format!("warning: skipping a checkpoint: {e}"));
            None
        }
        Err(e) => {
            // Dropped, so the next run does not trip over it again.
            log(&format!("warning: dropping a damaged checkpoint: {e}"));
            remove_checkpoint(&found.path);
            None
        }
    };
    let found = found_checkpoints(dir);
    for own in found.iter().filter(|f| f.steps == steps) {
        if let Some(c) = load(own) {
            let named_step = own.step.unwrap_or(c.meta.step);
            if c.meta.schedule_steps == steps && c.meta.step == named_step && c.meta.step <= steps {
                // A kill between a save's seal and its clean-up left older
                // ones (a finished run saves no more to remove them).
                remove_older(dir, steps, own, true);
                return Resume::Continue(c);
            }
            log(&format!(
                "ignoring {}: it is for another run",
                own.path.display()
            ));
        }
    }
    // Only a finished shorter run is extended: its last checkpoint is at
    // its own end.
    let finished = |f: &&Found| f.steps < steps && f.step.is_none_or(|step| step == f.steps);
    for shorter in found.iter().filter(finished) {
        if let Some(c) = load(shorter) {
            if c.meta.step == shorter.steps && c.meta.schedule_steps == shorter.steps {
                return Resume::Extend(c);
            }
        }
    }
    Resume::Fresh
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(step: usize, schedule_steps: usize) -> Checkpoint {
        let a = |name: &str, v: f32| Array {
            name: name.into(),
            shape: vec![2],
            data: vec![v, -v],
        };
        Checkpoint {
            meta: Meta {
                step,
                schedule_steps,
                rng: [1, 2, 3, 4],
                adam_t: step as u64,
                curve: vec![CurveRow {
                    step: 1,
                    lr: 0.1,
                    train_loss: 2.5,
                    val_loss: Some(2.4),
                    val_accuracy: None,
                }],
                tokens_trained: 100,
                train_seconds: 1.5,
            },
            params: vec![a("a", 1.0), a("b", 2.0)],
            adam_m: vec![a("a", 3.0), a("b", 4.0)],
            adam_v: vec![a("a", 5.0), a("b", 6.0)],
        }
    }

    #[test]
    fn round_trip_and_damage_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = checkpoint_file(dir.path(), 10, 4);
        let c = sample(4, 10);
        c.save(&path).unwrap();
        assert_eq!(Checkpoint::load(&path).unwrap(), c);
        let mut bytes = fs::read(&path).unwrap();
        bytes.truncate(bytes.len() - 3);
        fs::write(&path, bytes).unwrap();
        assert!(Checkpoint::load(&path).is_err());
        fs::write(&path, b"junk").unwrap();
        assert!(Checkpoint::load(&path).is_err());
    }

    #[test]
    fn a_checkpoint_patched_in_place_is_dropped_not_resumed() {
        // Floats overwritten in a well-formed file: safetensors reads it
        // fine, only the seal tells.
        let dir = tempfile::tempdir().unwrap();
        let path = checkpoint_file(dir.path(), 10, 4);
        save_latest(dir.path(), &sample(4, 10)).unwrap();
        let mut bytes = fs::read(&path).unwrap();
        let n = bytes.len();
        bytes[n - 4..].copy_from_slice(&7.5f32.to_le_bytes());
        fs::write(&path, bytes).unwrap();
        let logged = std::cell::RefCell::new(Vec::new());
        let resume = choose_resume(dir.path(), 10, &|l| logged.borrow_mut().push(l.to_string()));
        assert!(matches!(resume, Resume::Fresh), "{resume:?}");
        assert!(
            logged.borrow()[0].contains("does not match its seal"),
            "{:?}",
            logged.borrow()
        );
        assert!(!path.exists());
    }

    #[test]
    fn resume_prefers_own_run_then_longest_finished_shorter_run() {
        let dir = tempfile::tempdir().unwrap();
        let logged = std::cell::RefCell::new(Vec::new());
        let log = |s: &str| logged.borrow_mut().push(s.to_string());
        assert!(matches!(choose_resume(dir.path(), 50, &log), Resume::Fresh));
        save_latest(dir.path(), &sample(20, 20)).unwrap();
        save_latest(dir.path(), &sample(30, 30)).unwrap();
        save_latest(dir.path(), &sample(35, 40)).unwrap(); // unfinished
        match choose_resume(dir.path(), 50, &log) {
            Resume::Extend(c) => assert_eq!(c.meta.step, 30),
            other => panic!("{other:?}"),
        }
        match choose_resume(dir.path(), 40, &log) {
            Resume::Continue(c) => assert_eq!(c.meta.step, 35),
            other => panic!("{other:?}"),
        }
        let torn = checkpoint_file(dir.path(), 50, 45);
        fs::write(&torn, b"torn write").unwrap();
        seal::seal(&torn).unwrap();
        assert!(matches!(
            choose_resume(dir.path(), 50, &log),
            Resume::Extend(_)
        ));
        assert!(logged.borrow().iter().any(|l| l.contains("damaged")));
        assert!(matches!(choose_resume(dir.path(), 10, &log), Resume::Fresh));
    }

    /// A kill between a checkpoint's rename and its seal leaves an unsealed
    /// newest file: the run resumes from the one before, which a save
    /// removes only after the new one is sealed.
    #[test]
    fn a_save_cut_short_resumes_from_the_checkpoint_before() {
        let dir = tempfile::tempdir().unwrap();
        let files = |dir: &Path| {
            let mut names: Vec<String> = fs::read_dir(dir)
                .unwrap()
                .map(|e| e.unwrap().file_name().into_string().unwrap())
                .collect();
            names.sort();
            names
        };
        save_latest(dir.path(), &sample(10, 40)).unwrap();
        save_latest(dir.path(), &sample(15, 40)).unwrap();
        assert_eq!(
            files(dir.path()),
            ["run-40-at-15.safetensors", "run-40-at-15.safetensors.b3"]
        );
        let cut_short = checkpoint_file(dir.path(), 40, 20);
        fs::copy(checkpoint_file(dir.path(), 40, 15), &cut_short).unwrap();
        let logged = std::cell::RefCell::new(Vec::new());
        match choose_resume(dir.path(), 40, &|l| logged.borrow_mut().push(l.to_string())) {
            Resume::Continue(c) => assert_eq!(c.meta.step, 15),
            other => panic!("{other:?}"),
        }
        assert!(!cut_short.exists());
        assert!(logged.borrow().is_empty(), "{:?}", logged.borrow());
    }

    /// `run-{steps}.safetensors`, one file per run, is what vgmake wrote
    /// before checkpoints were named by their step: still resumed.
    #[test]
    fn a_checkpoint_under_the_old_name_is_resumed() {
        let dir = tempfile::tempdir().unwrap();
        let log = |_: &str| {};
        sample(30, 30)
            .save(&dir.path().join("run-30.safetensors"))
            .unwrap();
        sample(35, 40)
            .save(&dir.path().join("run-40.safetensors"))
            .unwrap();
        match choose_resume(dir.path(), 40, &log) {
            Resume::Continue(c) => assert_eq!(c.meta.step, 35),
            other => panic!("{other:?}"),
        }
        match choose_resume(dir.path(), 50, &log) {
            Resume::Extend(c) => assert_eq!(c.meta.step, 30),
            other => panic!("{other:?}"),
        }
        save_latest(dir.path(), &sample(36, 40)).unwrap();
        assert!(!dir.path().join("run-40.safetensors").exists());
    }

    /// What a kill leaves besides an unsealed file: a save's temp files
    /// (removed by the run's next save) and, killed between a save's seal
    /// and its clean-up, an older sealed checkpoint (removed when the run
    /// resumes: a finished run saves no more). Saving a step again keeps
    /// the sealed file as it is.
    #[test]
    fn leftovers_of_a_kill_are_cleaned_up() {
        let dir = tempfile::tempdir().unwrap();
        let log = |_: &str| {};
        save_latest(dir.path(), &sample(10, 40)).unwrap();
        let tmp = dir.path().join("run-40-at-15.safetensors.tmp-999");
        let seal_tmp = dir.path().join("run-40-at-10.safetensors.b3.tmp-999");
        fs::write(&tmp, b"half a checkpoint").unwrap();
        fs::write(&seal_tmp, b"half a seal").unwrap();
        let other_run = dir.path().join("run-50-at-5.safetensors.tmp-998");
        fs::write(&other_run, b"another run's save").unwrap();
        save_latest(dir.path(), &sample(15, 40)).unwrap();
        assert!(!tmp.exists() && !seal_tmp.exists());
        assert!(other_run.exists(), "another run's files are its own");

        let stale = checkpoint_file(dir.path(), 40, 10);
        sample(10, 40).save(&stale).unwrap();
        match choose_resume(dir.path(), 40, &log) {
            Resume::Continue(c) => assert_eq!(c.meta.step, 15),
            other => panic!("{other:?}"),
        }
        assert!(!stale.exists());

        let latest = checkpoint_file(dir.path(), 40, 15);
        let sealed_at = fs::metadata(seal::seal_path(&latest))
            .unwrap()
            .modified()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        save_latest(dir.path(), &sample(15, 40)).unwrap();
        let now = fs::metadata(seal::seal_path(&latest))
            .unwrap()
            .modified()
            .unwrap();
        assert_eq!(
            sealed_at, now,
            "a sealed checkpoint of the same step is not rewritten"
        );
    }
}
