//! Checkpoints: weights, AdamW moments, step, RNG state and the loss curve so
//! far, in one safetensors file (the rest as JSON in its metadata), written
//! atomically (temp file + rename) and sealed (`vgmake_api::seal`): a
//! checkpoint whose bytes do not match its seal is dropped, never resumed.
//!
//! A run of `steps` steps keeps its latest checkpoint in `run-{steps}.safetensors`
//! inside the stage's state folder (shared by runs that differ only in
//! `steps`, `checkpoint_every` or `threads`). See [`choose_resume`].

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};

use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use serde::{Deserialize, Serialize};

use super::curve::CurveRow;
use crate::api::seal;

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

pub fn run_file(dir: &Path, steps: usize) -> PathBuf {
    dir.join(format!("run-{steps}.safetensors"))
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
    pub fn load(path: &Path) -> Result<Checkpoint, String> {
        seal::check(path).map_err(|e| e.to_string())?;
        let fail = |what: String| format!("{}: {what}", path.display());
        let bytes = fs::read(path).map_err(|e| fail(e.to_string()))?;
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
    let load = |path: &Path| match Checkpoint::load(path) {
        Ok(c) => Some(c),
        Err(e) => {
            // Dropped, so the next run does not trip over it again.
            log(&format!("warning: dropping a damaged checkpoint: {e}"));
            let _ = seal::unseal(path);
            let _ = fs::remove_file(path);
            None
        }
    };
    let own = run_file(dir, steps);
    if own.exists() {
        if let Some(c) = load(&own) {
            if c.meta.schedule_steps == steps && c.meta.step <= steps {
                return Resume::Continue(c);
            }
            log(&format!(
                "ignoring {}: it is for another run",
                own.display()
            ));
        }
    }
    let mut shorter: Vec<usize> = fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            name.strip_prefix("run-")?
                .strip_suffix(".safetensors")?
                .parse()
                .ok()
        })
        .filter(|&s| s < steps)
        .collect();
    shorter.sort_unstable_by(|a, b| b.cmp(a));
    for s in shorter {
        if let Some(c) = load(&run_file(dir, s)) {
            if c.meta.step == s && c.meta.schedule_steps == s {
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
        let path = run_file(dir.path(), 10);
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
        let path = run_file(dir.path(), 10);
        sample(4, 10).save(&path).unwrap();
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
        sample(20, 20).save(&run_file(dir.path(), 20)).unwrap();
        sample(30, 30).save(&run_file(dir.path(), 30)).unwrap();
        sample(35, 40).save(&run_file(dir.path(), 40)).unwrap(); // unfinished
        match choose_resume(dir.path(), 50, &log) {
            Resume::Extend(c) => assert_eq!(c.meta.step, 30),
            other => panic!("{other:?}"),
        }
        match choose_resume(dir.path(), 40, &log) {
            Resume::Continue(c) => assert_eq!(c.meta.step, 35),
            other => panic!("{other:?}"),
        }
        fs::write(run_file(dir.path(), 50), b"torn write").unwrap();
        assert!(matches!(
            choose_resume(dir.path(), 50, &log),
            Resume::Extend(_)
        ));
        assert!(logged.borrow().iter().any(|l| l.contains("damaged")));
        assert!(matches!(choose_resume(dir.path(), 10, &log), Resume::Fresh));
    }
}
