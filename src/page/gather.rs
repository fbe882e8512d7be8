//! Everything the report shows, read from the cache: each variant's results,
//! freshness, stage records and galleries; every variant's curves; the
//! summaries and reference items of distinct outputs. The writers only
//! format what is here.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value as Json;
use vgmake_api::{
    CurveSpec, Fact, GallerySpec, JsonAt, MediaFile, MetricSpec, Registry, StageKind, SummarySpec,
};

use super::freshness::{self, Freshness};
use crate::hashing::TreeManifest;
use crate::project::Project;
use crate::results::{self, VariantResults};
use crate::store::{ActionRecord, Store};

/// Points kept per line: enough for a 720-pixel chart, and the page of 20
/// variants stays small.
const MAX_POINTS: usize = 360;

pub struct Page {
    pub project_dir: PathBuf,
    /// Unix time it was made.
    pub generated: u64,
    pub variants: Vec<VariantPage>,
    /// The parameters whose values differ between the variants.
    pub params: Vec<String>,
    /// Every metric label, in `compare`'s order.
    pub labels: Vec<String>,
    /// Labels of the metrics their kinds call headline numbers.
    pub headline: Vec<String>,
    pub charts: Vec<Chart>,
    pub references: Vec<Reference>,
    pub summaries: Vec<Summary>,
}

pub struct VariantPage {
    pub results: VariantResults,
    pub freshness: Freshness,
    /// The command line that builds these results again.
    pub reproduce: String,
    pub stages: Vec<StageInfo>,
    pub galleries: Vec<Gallery>,
}

impl VariantPage {
    pub fn name(&self) -> &str {
        &self.results.variant
    }
}

/// One stage result of a variant.
pub struct StageInfo {
    pub name: String,
    pub kind: String,
    pub key: String,
    pub output: String,
    pub finished: u64,
    pub seconds: f64,
}

/// One declared series: a line per variant (by index into `variants`).
pub struct Chart {
    pub stage: String,
    pub spec: CurveSpec,
    pub lines: Vec<(usize, Vec<(f64, f64)>)>,
}

pub struct Gallery {
    pub stage: String,
    pub title: &'static str,
    pub items: Vec<Item>,
}

/// One item of a gallery: its files and its numbers as shown.
pub struct Item {
    pub name: String,
    pub files: Vec<(MediaFile, PathBuf)>,
    pub numbers: Vec<(&'static str, String)>,
}

/// A reference item, once per distinct file content.
pub struct Reference {
    pub label: &'static str,
    pub title: String,
    pub variants: Vec<String>,
    pub item: Item,
}

/// A stage's summary, once per distinct output.
pub struct Summary {
    pub stage: String,
    pub title: &'static str,
    pub variants: Vec<String>,
    pub facts: Vec<FactValue>,
}

pub enum FactValue {
    Number(&'static str, f64),
    Counts(&'static str, Vec<(String, f64)>),
    Histogram {
        label: &'static str,
        x_label: &'static str,
        /// (low, high, count)
        bins: Vec<(f64, f64, f64)>,
    },
}

/// Reads the named built variants.
pub fn gather(project: &Project, kinds: &Registry, store: &Store, names: &[String]) -> Page {
    let mut page = Page {
        project_dir: project.dir.clone(),
        generated: crate::lock::unix_now(),
        variants: Vec::new(),
        params: Vec::new(),
        labels: Vec::new(),
        headline: Vec::new(),
        charts: Vec::new(),
        references: Vec::new(),
        summaries: Vec::new(),
    };
    let mut charts: BTreeMap<(String, &'static str), usize> = BTreeMap::new();
    let mut references: BTreeMap<String, usize> = BTreeMap::new();
    let mut summaries: BTreeMap<(String, String, &'static str), usize> = BTreeMap::new();
    let history = store.history().unwrap_or_default();
    for (index, name) in names.iter().enumerate() {
        let refs = store.refs(name);
        let mut stages = Vec::new();
        let mut galleries = Vec::new();
        let mut built = Vec::new();
        for stage in results::stage_order(&project.pipeline, refs.keys()) {
            let Some(record) = store.record(&refs[&stage].key) else {
                continue;
            };
            let dir = output_folder(project, store, name, &stage, &record.output);
            let kind = project
                .pipeline
                .stage(&stage)
                .map(|d| d.kind)
                .or_else(|| kinds.find(&record.manifest.kind));
            if let Some(kind) = kind {
                add_headline(&mut page.headline, kind);
                let spec = kind.report();
                for curve in spec.curves {
                    let Some(points) = read_curve(&dir.join(curve.file), &curve) else {
                        continue;
                    };
                    let slot = *charts.entry((stage.clone(), curve.y)).or_insert_with(|| {
                        page.charts.push(Chart {
                            stage: stage.clone(),
                            spec: curve.clone(),
                            lines: Vec::new(),
                        });
                        page.charts.len() - 1
                    });
                    page.charts[slot].lines.push((index, points));
                }
                let manifest = store.tree_manifest(&record.output).unwrap_or_default();
                if let Some(g) = &spec.gallery {
                    galleries.push(gallery(&stage, g, &dir, &manifest));
                    if let Some(r) = reference(g, &dir, &manifest) {
                        let (hash, reference) = r;
                        match references.get(&hash) {
                            Some(&i) => page.references[i].variants.push(name.clone()),
                            None => {
                                references.insert(hash, page.references.len());
                                page.references.push(Reference {
                                    variants: vec![name.clone()],
                                    ..reference
                                });
                            }
                        }
                    }
                }
                for s in &spec.summaries {
                    let id = (stage.clone(), record.output.clone(), s.title);
                    match summaries.get(&id) {
                        Some(&i) => page.summaries[i].variants.push(name.clone()),
                        None => {
                            summaries.insert(id, page.summaries.len());
                            page.summaries.push(summary(&stage, s, &dir, name));
                        }
                    }
                }
            }
            built.push((stage.clone(), record.manifest.params.clone()));
            stages.push(stage_info(&stage, &record));
        }
        page.variants.push(VariantPage {
            results: results::load(&project.pipeline, store, name),
            freshness: freshness::check(project, store, &history, name, &refs),
            reproduce: freshness::reproduce(&project.pipeline, name, &built),
            stages,
            galleries,
        });
    }
    let results: Vec<&VariantResults> = page.variants.iter().map(|v| &v.results).collect();
    page.params = results::differing_params(&results);
    page.labels = results::labels(&results);
    page.headline.retain(|h| page.labels.contains(h));
    page
}

fn add_headline(headline: &mut Vec<String>, kind: &dyn StageKind) {
    for m in kind.metrics().iter().filter(|m| m.headline) {
        if !headline.iter().any(|h| h == m.label) {
            headline.push(m.label.to_string());
        }
    }
}

fn stage_info(stage: &str, record: &ActionRecord) -> StageInfo {
    StageInfo {
        name: stage.to_string(),
        kind: record.manifest.kind.clone(),
        key: record.key.clone(),
        output: record.output.clone(),
        finished: record.finished,
        seconds: record.seconds,
    }
}

/// The output as `out/<variant>/<stage>` when that link leads to it (so the
/// page's links read as the user's folders), else its cache folder.
fn output_folder(
    project: &Project,
    store: &Store,
    variant: &str,
    stage: &str,
    hash: &str,
) -> PathBuf {
    let cached = store.output_dir(hash);
    let link = crate::executor::out_link(&project.dir, variant, stage);
    match (link.canonicalize(), cached.canonicalize()) {
        (Ok(a), Ok(b)) if a == b => link,
        _ => cached,
    }
}

/// A curve's (x, y) points, averaged into at most [`MAX_POINTS`]; `None`
/// when the file or a column is missing.
fn read_curve(path: &Path, spec: &CurveSpec) -> Option<Vec<(f64, f64)>> {
    let text = std::fs::read_to_string(path).ok()?;
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next()?.split(',').map(str::trim).collect();
    let xi = header.iter().position(|h| *h == spec.x)?;
    let yi = header.iter().position(|h| *h == spec.y)?;
    let points: Vec<(f64, f64)> = lines
        .filter_map(|line| {
            let cells: Vec<&str> = line.split(',').collect();
            let x = cells.get(xi)?.trim().parse::<f64>().ok()?;
            let y = cells.get(yi)?.trim().parse::<f64>().ok()?;
            (x.is_finite() && y.is_finite()).then_some((x, y))
        })
        .collect();
    Some(thin(points))
}

/// Averages consecutive points so at most [`MAX_POINTS`] remain.
fn thin(points: Vec<(f64, f64)>) -> Vec<(f64, f64)> {
    if points.len() <= MAX_POINTS {
        return points;
    }
    let per = points.len().div_ceil(MAX_POINTS);
    points
        .chunks(per)
        .map(|c| {
            let n = c.len() as f64;
            let (sx, sy) = c.iter().fold((0.0, 0.0), |a, p| (a.0 + p.0, a.1 + p.1));
            (sx / n, sy / n)
        })
        .collect()
}

fn read_json(dir: &Path, at: &JsonAt) -> Option<Json> {
    let doc: Json = serde_json::from_slice(&std::fs::read(dir.join(at.file)).ok()?).ok()?;
    doc.pointer(at.pointer).cloned()
}

/// The stems of the output's files with one of `files`' extensions.
fn stems<'a>(
    manifest: &'a TreeManifest,
    files: &'a [MediaFile],
) -> BTreeMap<&'a str, Vec<(&'a MediaFile, &'a str)>> {
    let mut by_stem: BTreeMap<&str, Vec<(&MediaFile, &str)>> = BTreeMap::new();
    for entry in &manifest.files {
        let Some((stem, ext)) = entry.path.rsplit_once('.') else {
            continue;
        };
        if let Some(media) = files.iter().find(|m| m.extension == ext) {
            by_stem
                .entry(stem)
                .or_default()
                .push((media, entry.path.as_str()));
        }
    }
    for list in by_stem.values_mut() {
        list.sort_by_key(|(m, _)| files.iter().position(|f| f == *m));
    }
    by_stem
}

fn numbers(object: Option<&Json>, specs: &[MetricSpec]) -> Vec<(&'static str, String)> {
    let Some(object) = object else {
        return Vec::new();
    };
    specs
        .iter()
        .filter_map(|s| Some((s.label, s.format(object.get(s.key)?.as_f64()?))))
        .collect()
}

fn gallery(stage: &str, spec: &GallerySpec, dir: &Path, manifest: &TreeManifest) -> Gallery {
    let entries = spec
        .items
        .as_ref()
        .and_then(|(at, _)| read_json(dir, at))
        .and_then(|v| v.as_array().cloned())
        .unwrap_or_default();
    let name_key = spec.items.as_ref().map_or("name", |(_, k)| *k);
    let items = stems(manifest, &spec.files)
        .into_iter()
        .filter(|(stem, _)| stem.starts_with(spec.prefix) && !stem.contains('/'))
        .map(|(stem, files)| Item {
            name: stem.to_string(),
            files: files
                .into_iter()
                .map(|(m, path)| (m.clone(), dir.join(path)))
                .collect(),
            numbers: numbers(
                entries
                    .iter()
                    .find(|e| e.get(name_key).and_then(Json::as_str) == Some(stem)),
                &spec.item_metrics,
            ),
        })
        .collect();
    Gallery {
        stage: stage.to_string(),
        title: spec.title,
        items,
    }
}

/// The reference item and the hash of its first file (what makes two
/// variants' references the same).
fn reference(
    spec: &GallerySpec,
    dir: &Path,
    manifest: &TreeManifest,
) -> Option<(String, Reference)> {
    let r = spec.reference.as_ref()?;
    let stems = stems(manifest, &spec.files);
    let files = stems.get(r.stem)?;
    let first = files.first()?.1;
    let hash = manifest
        .files
        .iter()
        .find(|f| f.path == first)?
        .hash
        .clone();
    let about = r.about.as_ref().and_then(|(at, _)| read_json(dir, at));
    let title = r
        .about
        .as_ref()
        .and_then(|(_, key)| about.as_ref()?.get(*key)?.as_str().map(str::to_string))
        .unwrap_or_else(|| r.stem.to_string());
    Some((
        hash,
        Reference {
            label: r.label,
            title,
            variants: Vec::new(),
            item: Item {
                name: r.stem.to_string(),
                files: files
                    .iter()
                    .map(|(m, path)| ((*m).clone(), dir.join(path)))
                    .collect(),
                numbers: numbers(about.as_ref(), &spec.item_metrics),
            },
        },
    ))
}

fn summary(stage: &str, spec: &SummarySpec, dir: &Path, variant: &str) -> Summary {
    let doc: Option<Json> = std::fs::read(dir.join(spec.file))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok());
    let at = |pointer: &str| doc.as_ref().and_then(|d| d.pointer(pointer));
    let facts = spec
        .facts
        .iter()
        .filter_map(|fact| match fact {
            Fact::Number { pointer, label } => {
                Some(FactValue::Number(label, at(pointer)?.as_f64()?))
            }
            Fact::Counts { pointer, label } => Some(FactValue::Counts(
                label,
                at(pointer)?
                    .as_object()?
                    .iter()
                    .filter_map(|(k, v)| Some((k.clone(), v.as_f64()?)))
                    .collect(),
            )),
            Fact::Histogram {
                pointer,
                label,
                x_label,
            } => Some(FactValue::Histogram {
                label,
                x_label,
                bins: at(pointer)?
                    .as_array()?
                    .iter()
                    .filter_map(|b| {
                        let n = |k: &str| b.get(k)?.as_f64();
                        Some((n("low")?, n("high")?, n("count")?))
                    })
                    .collect(),
            }),
        })
        .collect();
    Summary {
        stage: stage.to_string(),
        title: spec.title,
        variants: vec![variant.to_string()],
        facts,
    }
}
