//! The model bundle on disk: a directory with `manifest.json` beside each component's files
//! (safetensors weights, JSON vocabularies). The manifest carries the format version, the labels,
//! every file's sha256, calibration, thresholds, training settings, the data fingerprint and the
//! metrics. Saving writes a temporary sibling directory and renames it into place; loading
//! refuses a newer format and any checksum mismatch.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::path::{Path, PathBuf};

use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use serde::{Deserialize, Serialize};

use super::abstain::AbstainRule;
use super::calibration::ThresholdChoice;
use super::encoder::{Encoder, EncoderClassifier};
use super::fastbert::{Precision, QWeights};
use super::finetune::FineTuneSummary;
use super::heads::{Head, LogisticHead, MlpHead};
use super::linear::{FittedLinear, PathPoint};
use super::novelty::Mahalanobis;
use super::train::OutOfScope;
use super::{Affinity, NearestRow, Novelty, NoveltyScorer};

fn is_zero(n: &usize) -> bool {
    *n == 0
}
use crate::error::{Error, Result};
use crate::io::atomic::TempDir;
use crate::monitor::profile::{Profile, ProfileSummary, Sample};
use crate::text::{FeatureSpec, Vectorizer, Vocabulary};
use crate::util::{sha256_file, sha256_hex};

/// The newest bundle format this build reads and the one it writes. Version 2 added the
/// abstain rule and the novelty score; a version-1 bundle abstains on confidence alone, as it
/// always did.
pub const FORMAT_VERSION: u32 = 2;
pub const MANIFEST: &str = "manifest.json";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Manifest {
    pub format_version: u32,
    pub cqr_version: String,
    pub name: String,
    pub version: String,
    pub created_at: String,
    pub labels: Vec<String>,
    pub components: Vec<ComponentManifest>,
    pub abstain: ThresholdChoice,
    /// Temperature applied to the log of the ensemble's mixed probabilities (1 with one
    /// component): a mixture of calibrated components is not itself calibrated.
    #[serde(default = "one")]
    pub ensemble_temperature: f32,
    /// `classify --cascade`: the linear component answers alone when its calibrated confidence
    /// is at least this; the rest go through the whole ensemble. Chosen on validation.
    #[serde(default)]
    pub cascade_threshold: Option<f32>,
    /// How training text was masked; classify masks the model's input the same way.
    #[serde(default)]
    pub masking: crate::text::pii::Masking,
    /// sha256 over the component files' names and checksums: identifies the model's behaviour.
    pub checksum: String,
    pub training: TrainingInfo,
    pub metrics: BTreeMap<String, f64>,
    /// The drift reference profile (bundles trained before drift-check have none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<StoredProfile>,
    /// The novelty score (format 2 on).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub novelty: Option<NoveltyManifest>,
    /// The abstain rule (format 2 on); without it, queries below `abstain.threshold` abstain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<AbstainRule>,
    /// The label that marked out-of-scope rows in training, and whether it was a class.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub out_of_scope: Option<OutOfScope>,
}

/// Which novelty score a bundle carries.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum NoveltyKind {
    /// Cosine distance to the nearest training row's embedding (`novelty.safetensors`).
    NearestRow,
    /// Relative Mahalanobis distance of the encoder's embedding (`novelty.safetensors`).
    RelativeMahalanobis,
    /// The linear component's negative largest logit.
    MaxLogit,
}

/// The novelty score as the manifest lists it: its kind, standardisation and file.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct NoveltyManifest {
    pub kind: NoveltyKind,
    /// Held-out validation mean and standard deviation of the raw score.
    pub center: f32,
    pub scale: f32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shrinkage: Option<f64>,
    /// Out-of-scope examples kept for the affinity score (0: none).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub affinity_rows: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<FileEntry>,
}

/// The novelty score's arrays in a bundle.
pub const NOVELTY_FILE: &str = "novelty.safetensors";

/// The drift reference profile as a bundle keeps it: the exact counts here, the samples in a
/// safetensors file (values f32, embeddings f16) listed with its sha256.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StoredProfile {
    /// Which rows were profiled.
    pub source: String,
    #[serde(flatten)]
    pub summary: ProfileSummary,
    pub sample_rows: usize,
    pub embedding_rows: usize,
    /// Rows of the novelty sample (training and validation rows' embeddings).
    #[serde(default)]
    pub novelty_rows: usize,
    pub embedding_dim: usize,
    pub file: FileEntry,
}

/// The profile's samples file in a bundle.
pub const PROFILE_FILE: &str = "reference.safetensors";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ComponentManifest {
    pub kind: String,
    /// Ensemble weight; the weights of all components sum to 1.
    pub weight: f32,
    pub temperature: f32,
    /// Role → file, e.g. `weights` → `linear.safetensors`.
    pub files: BTreeMap<String, FileEntry>,
    pub settings: serde_json::Value,
}

impl ComponentManifest {
    /// The path of the file this component lists under `role`.
    pub fn file(&self, bundle: &Path, role: &str) -> Result<PathBuf> {
        self.files
            .get(role)
            .map(|f| bundle.join(&f.path))
            .ok_or_else(|| {
                Error::model(
                    bundle,
                    format!("the {} component lists no `{role}` file", self.kind),
                )
            })
    }

    pub fn settings<T: serde::de::DeserializeOwned>(&self, bundle: &Path) -> Result<T> {
        serde_json::from_value(self.settings.clone())
            .map_err(|e| Error::model(bundle, format!("{} settings: {e}", self.kind)))
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FileEntry {
    pub path: String,
    pub sha256: String,
    pub bytes: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DataFingerprint {
    pub source: String,
    pub rows: usize,
    /// sha256 over the (text, label) pairs in order.
    pub sha256: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TrainingInfo {
    pub seed: u64,
    pub args: serde_json::Value,
    pub train_data: DataFingerprint,
    pub valid_data: DataFingerprint,
    pub seconds: f64,
}

fn one() -> f32 {
    1.0
}

/// Settings the linear component stores in its manifest entry.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LinearSettings {
    pub features: FeatureSpec,
    pub l2: f32,
    pub n_features: usize,
    pub l2_path: Vec<PathPoint>,
}

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// `v` as little-endian f16 bytes (embeddings are stored at half precision).
fn f16_bytes(v: &[f32]) -> Vec<u8> {
    v.iter()
        .flat_map(|&x| half::f16::from_f32(x).to_le_bytes())
        .collect()
}

/// Little-endian f16 bytes read back as f32.
fn f16_values(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(2)
        .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
        .collect()
}

fn tensor_f32(st: &SafeTensors<'_>, name: &str, file: &Path) -> Result<(Vec<usize>, Vec<f32>)> {
    let t = st
        .tensor(name)
        .map_err(|e| Error::model(file, format!("tensor `{name}`: {e}")))?;
    if t.dtype() != Dtype::F32 {
        return Err(Error::model(
            file,
            format!("tensor `{name}` is {:?}, expected F32", t.dtype()),
        ));
    }
    let data = t
        .data()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    Ok((t.shape().to_vec(), data))
}

/// Serialises named f32 tensors (name, shape, data) as safetensors bytes.
fn safetensors_f32(dir: &Path, tensors: &[(&str, Vec<usize>, &[f32])]) -> Result<Vec<u8>> {
    let bytes: Vec<Vec<u8>> = tensors.iter().map(|(_, _, d)| f32_bytes(d)).collect();
    let views: Vec<(&str, TensorView<'_>)> = tensors
        .iter()
        .zip(&bytes)
        .map(|((n, shape, _), b)| TensorView::new(Dtype::F32, shape.clone(), b).map(|t| (*n, t)))
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| Error::model(dir, format!("building tensors: {e}")))?;
    safetensors::serialize(views, None)
        .map_err(|e| Error::model(dir, format!("serialising weights: {e}")))
}

fn write_file(dir: &Path, name: &str, bytes: &[u8]) -> Result<FileEntry> {
    let p = dir.join(name);
    fs::write(&p, bytes).map_err(|e| Error::io(&p, e))?;
    Ok(FileEntry {
        path: name.to_string(),
        sha256: sha256_hex(bytes),
        bytes: bytes.len() as u64,
    })
}

/// Writes the linear component's files into `dir` and returns its manifest entry.
pub fn write_linear(
    dir: &Path,
    m: &FittedLinear,
    temperature: f32,
    path: &[PathPoint],
) -> Result<ComponentManifest> {
    let d = m.vectorizer.n_features();
    let st = safetensors_f32(
        dir,
        &[
            ("bias", vec![m.n_classes], &m.bias),
            ("idf", vec![d], m.vectorizer.idf()),
            ("weight", vec![d, m.n_classes], &m.weights),
        ],
    )?;
    let vocab = serde_json::to_vec(&m.vocab).expect("a vocabulary of strings always serialises");
    let mut files = BTreeMap::new();
    files.insert(
        "weights".to_string(),
        write_file(dir, "linear.safetensors", &st)?,
    );
    files.insert(
        "vocab".to_string(),
        write_file(dir, "linear_vocab.json", &vocab)?,
    );
    let settings = LinearSettings {
        features: m.vectorizer.spec().clone(),
        l2: m.l2,
        n_features: d,
        l2_path: path.to_vec(),
    };
    Ok(ComponentManifest {
        kind: "linear".into(),
        weight: 1.0,
        temperature,
        files,
        settings: serde_json::to_value(settings).expect("settings always serialise"),
    })
}

/// Reads the linear component back; checksums have already been verified.
pub fn read_linear(bundle: &Path, c: &ComponentManifest, n_classes: usize) -> Result<FittedLinear> {
    let settings: LinearSettings = c.settings(bundle)?;
    let file = |role: &str| c.file(bundle, role);
    let wpath = file("weights")?;
    let vpath = file("vocab")?;
    let bytes = fs::read(&wpath).map_err(|e| Error::io(&wpath, e))?;
    let st = SafeTensors::deserialize(&bytes).map_err(|e| Error::model(&wpath, e.to_string()))?;
    let (wshape, weights) = tensor_f32(&st, "weight", &wpath)?;
    let (_, bias) = tensor_f32(&st, "bias", &wpath)?;
    let (_, idf) = tensor_f32(&st, "idf", &wpath)?;
    let vbytes = fs::read(&vpath).map_err(|e| Error::io(&vpath, e))?;
    let vocab: Vocabulary = serde_json::from_slice(&vbytes)
        .map_err(|e| Error::model(&vpath, format!("vocabulary: {e}")))?;
    if wshape != [idf.len(), n_classes] || bias.len() != n_classes {
        return Err(Error::model(
            &wpath,
            format!(
                "weight shape {wshape:?} does not fit {} features and {n_classes} labels",
                idf.len()
            ),
        ));
    }
    let vectorizer = Vectorizer::from_parts(settings.features, &vocab, idf)
        .map_err(|e| Error::model(&vpath, e.to_string()))?;
    Ok(FittedLinear {
        vectorizer,
        vocab,
        weights,
        bias,
        n_classes,
        l2: settings.l2,
    })
}

/// Settings the encoder component stores in its manifest entry.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct EncoderSettings {
    /// Where the encoder came from when trained (informative; the bundle carries its files).
    pub source: String,
    pub max_len: usize,
    pub dim: usize,
    pub head: String,
    pub head_alpha: f32,
    #[serde(default)]
    pub hidden: usize,
    #[serde(default)]
    pub dropout: f32,
    pub weights_sha256: String,
    /// Present when the encoder's weights were fine-tuned by cqr.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fine_tune: Option<FineTuneSummary>,
    /// The encoder's arithmetic; int8 weights are stored beside the f32 ones
    /// (`encoder_int8.safetensors`, role `int8_weights`).
    #[serde(default)]
    pub precision: Precision,
}

fn copy_file(dir: &Path, name: &str, src: &Path) -> Result<FileEntry> {
    let p = dir.join(name);
    let bytes = fs::copy(src, &p).map_err(|e| Error::io(src, e))?;
    Ok(FileEntry {
        path: name.to_string(),
        sha256: sha256_file(&p)?,
        bytes,
    })
}

/// Writes the encoder component: the encoder's own files (so the bundle stands alone) and the
/// head's weights.
pub fn write_encoder(
    dir: &Path,
    m: &EncoderClassifier,
    temperature: f32,
    weight: f32,
    alpha: f32,
    fine_tune: Option<&FineTuneSummary>,
) -> Result<ComponentManifest> {
    let src = &m.encoder.dir;
    let (st, head_kind, hidden, dropout) = match &m.head {
        Head::Logistic(h) => (
            safetensors_f32(
                dir,
                &[
                    ("bias", vec![h.n_classes], &h.bias),
                    ("weight", vec![h.dim, h.n_classes], &h.weight),
                ],
            )?,
            "logistic",
            0,
            0.0,
        ),
        Head::Mlp(h) => (
            safetensors_f32(
                dir,
                &[
                    ("b1", vec![h.hidden], &h.b1),
                    ("b2", vec![h.n_classes], &h.b2),
                    ("w1", vec![h.dim, h.hidden], &h.w1),
                    ("w2", vec![h.hidden, h.n_classes], &h.w2),
                ],
            )?,
            "mlp",
            h.hidden,
            h.dropout,
        ),
    };
    let mut files = BTreeMap::new();
    files.insert(
        "head".to_string(),
        write_file(dir, "encoder_head.safetensors", &st)?,
    );
    files.insert(
        "config".to_string(),
        copy_file(dir, "encoder_config.json", &src.join("config.json"))?,
    );
    files.insert(
        "tokenizer".to_string(),
        copy_file(dir, "encoder_tokenizer.json", &src.join("tokenizer.json"))?,
    );
    files.insert(
        "weights".to_string(),
        copy_file(
            dir,
            "encoder_model.safetensors",
            &src.join("model.safetensors"),
        )?,
    );
    if let Some(q) = m.encoder.int8_weights() {
        files.insert(
            INT8_ROLE.to_string(),
            write_file(dir, "encoder_int8.safetensors", &int8_safetensors(dir, &q)?)?,
        );
    }
    let settings = EncoderSettings {
        precision: m.encoder.precision(),
        source: fine_tune
            .map(|f| f.base.clone())
            .unwrap_or_else(|| src.display().to_string()),
        max_len: m.encoder.max_len,
        dim: m.encoder.dim,
        head: head_kind.into(),
        head_alpha: alpha,
        hidden,
        dropout,
        weights_sha256: m.encoder.weights_sha256.clone(),
        fine_tune: fine_tune.cloned(),
    };
    Ok(ComponentManifest {
        kind: "encoder".into(),
        weight,
        temperature,
        files,
        settings: serde_json::to_value(settings).expect("settings always serialise"),
    })
}

/// The role of the encoder's int8 weights in the component's files.
const INT8_ROLE: &str = "int8_weights";

/// Serialises int8 weights: `NAME.weight` (i8, `[out, k padded]`) and `NAME.scale` (f32).
fn int8_safetensors(dir: &Path, q: &[(String, &QWeights)]) -> Result<Vec<u8>> {
    let scales: Vec<Vec<u8>> = q
        .iter()
        .map(|(_, w)| w.scale.iter().flat_map(|v| v.to_le_bytes()).collect())
        .collect();
    let mut views = Vec::new();
    for ((name, w), scale) in q.iter().zip(&scales) {
        let o = w.scale.len();
        let bytes: &[u8] = bytemuck_i8(&w.q);
        let bad = |e: safetensors::SafeTensorError| Error::model(dir, e.to_string());
        views.push((
            format!("{name}.weight"),
            TensorView::new(Dtype::I8, vec![o, w.q.len() / o.max(1)], bytes).map_err(bad)?,
        ));
        views.push((
            format!("{name}.scale"),
            TensorView::new(Dtype::F32, vec![o], scale).map_err(bad)?,
        ));
    }
    safetensors::serialize(views, None).map_err(|e| Error::model(dir, e.to_string()))
}

fn bytemuck_i8(v: &[i8]) -> &[u8] {
    // SAFETY: i8 and u8 have the same size and alignment and every bit pattern is valid.
    unsafe { std::slice::from_raw_parts(v.as_ptr() as *const u8, v.len()) }
}

/// Reads what `int8_safetensors` wrote.
fn read_int8(path: &Path) -> Result<HashMap<String, QWeights>> {
    let bytes = fs::read(path).map_err(|e| Error::io(path, e))?;
    let st = SafeTensors::deserialize(&bytes)
        .map_err(|e| Error::model(path, format!("not a safetensors file: {e}")))?;
    let mut out = HashMap::new();
    for name in st.names() {
        let Some(base) = name.strip_suffix(".weight") else {
            continue;
        };
        let get = |n: &str, dtype: Dtype| {
            st.tensor(n)
                .ok()
                .filter(|t| t.dtype() == dtype)
                .ok_or_else(|| Error::model(path, format!("no {dtype:?} tensor {n}")))
        };
        let w = get(name, Dtype::I8)?;
        let s = get(&format!("{base}.scale"), Dtype::F32)?;
        let q = w.data().iter().map(|&b| b as i8).collect();
        let scale = s
            .data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        out.insert(base.to_string(), QWeights::new(q, scale));
    }
    Ok(out)
}

pub fn read_encoder(
    bundle: &Path,
    c: &ComponentManifest,
    n_classes: usize,
) -> Result<EncoderClassifier> {
    let settings: EncoderSettings = c.settings(bundle)?;
    let file = |role: &str| c.file(bundle, role);
    // load_manifest has already checked every file against its sha256.
    let weights_sha256 = c
        .files
        .get("weights")
        .map(|f| f.sha256.clone())
        .unwrap_or_default();
    let precision = super::fastbert::precision_override().unwrap_or(settings.precision);
    let int8 = match (precision, c.files.contains_key(INT8_ROLE)) {
        (Precision::Int8, true) => Some(read_int8(&file(INT8_ROLE)?)?),
        _ => None,
    };
    let encoder = Encoder::load_files(
        bundle,
        &file("config")?,
        &file("tokenizer")?,
        (&file("weights")?, weights_sha256),
        settings.max_len,
        (precision, int8.as_ref()),
    )?;
    let hpath = file("head")?;
    let bytes = fs::read(&hpath).map_err(|e| Error::io(&hpath, e))?;
    let st = SafeTensors::deserialize(&bytes).map_err(|e| Error::model(&hpath, e.to_string()))?;
    let dim = encoder.dim;
    let bad = |what: String| {
        Error::model(
            &hpath,
            format!("{what} does not fit dim {dim}, {n_classes} labels"),
        )
    };
    let head = match settings.head.as_str() {
        "logistic" => {
            let (shape, weight) = tensor_f32(&st, "weight", &hpath)?;
            let (_, bias) = tensor_f32(&st, "bias", &hpath)?;
            if shape != [dim, n_classes] || bias.len() != n_classes {
                return Err(bad(format!("head shape {shape:?}")));
            }
            Head::Logistic(LogisticHead {
                dim,
                n_classes,
                weight,
                bias,
            })
        }
        "mlp" => {
            let (s1, w1) = tensor_f32(&st, "w1", &hpath)?;
            let (_, b1) = tensor_f32(&st, "b1", &hpath)?;
            let (s2, w2) = tensor_f32(&st, "w2", &hpath)?;
            let (_, b2) = tensor_f32(&st, "b2", &hpath)?;
            let hidden = settings.hidden;
            if s1 != [dim, hidden]
                || s2 != [hidden, n_classes]
                || b1.len() != hidden
                || b2.len() != n_classes
            {
                return Err(bad(format!("MLP shapes {s1:?}, {s2:?}")));
            }
            Head::Mlp(MlpHead {
                dim,
                hidden,
                n_classes,
                dropout: settings.dropout,
                w1,
                b1,
                w2,
                b2,
            })
        }
        other => {
            return Err(Error::model(
                bundle,
                format!("unknown encoder head `{other}` (known: logistic, mlp)"),
            ))
        }
    };
    Ok(EncoderClassifier {
        head,
        encoder,
        batch_size: super::encoder::DEFAULT_BATCH,
    })
}

/// Writes `profile`'s samples into `dir` and returns what the manifest keeps of it.
pub fn write_profile(dir: &Path, source: &str, profile: &Profile) -> Result<StoredProfile> {
    let s = &profile.sample;
    let n = s.confidence.len();
    let rows = s.embedding_rows();
    let (embeddings, novelty) = (f16_bytes(&s.embeddings), f16_bytes(&s.novelty));
    let novelty_rows = s.novelty_rows();
    let values = [
        ("confidence", &s.confidence),
        ("correct", &s.correct),
        ("length", &s.length),
        ("oov_rate", &s.oov),
    ]
    .map(|(name, v)| (name, f32_bytes(v)));
    let mut views: Vec<(&str, TensorView<'_>)> = Vec::new();
    for (name, bytes) in &values {
        views.push((*name, tensor_view(dir, Dtype::F32, vec![n], bytes)?));
    }
    if rows > 0 {
        views.push((
            "embeddings",
            tensor_view(dir, Dtype::F16, vec![rows, s.dim], &embeddings)?,
        ));
    }
    let scores = f32_bytes(&s.novelty_scores);
    if novelty_rows > 0 {
        views.push((
            "novelty_embeddings",
            tensor_view(dir, Dtype::F16, vec![novelty_rows, s.dim], &novelty)?,
        ));
        views.push((
            "novelty_scores",
            tensor_view(dir, Dtype::F32, vec![s.novelty_scores.len()], &scores)?,
        ));
    }
    let bytes = safetensors::serialize(views, None)
        .map_err(|e| Error::model(dir, format!("serialising the drift profile: {e}")))?;
    Ok(StoredProfile {
        source: source.to_string(),
        summary: profile.summary.clone(),
        sample_rows: n,
        embedding_rows: rows,
        novelty_rows,
        embedding_dim: if rows > 0 { s.dim } else { 0 },
        file: write_file(dir, PROFILE_FILE, &bytes)?,
    })
}

/// Writes the novelty score's arrays (when it has any) into `dir` and returns its manifest entry.
pub fn write_novelty(dir: &Path, novelty: &Novelty, shrinkage: f64) -> Result<NoveltyManifest> {
    // (name, dtype, shape, little-endian bytes)
    let mut arrays: Vec<(&str, Dtype, Vec<usize>, Vec<u8>)> = Vec::new();
    let (kind, shrinkage) = match &novelty.scorer {
        NoveltyScorer::MaxLogit => (NoveltyKind::MaxLogit, None),
        NoveltyScorer::NearestRow(n) => {
            let shape = vec![n.rows.len() / n.dim, n.dim];
            arrays.push(("nearest_rows", Dtype::F16, shape, f16_bytes(&n.rows)));
            (NoveltyKind::NearestRow, None)
        }
        NoveltyScorer::RelativeMahalanobis(m) => {
            for (name, shape, v) in m.tensors() {
                arrays.push((name, Dtype::F32, shape, f32_bytes(v)));
            }
            (NoveltyKind::RelativeMahalanobis, Some(shrinkage))
        }
    };
    if let Some(a) = &novelty.affinity {
        let rows = |v: &[f32]| vec![v.len() / a.dim, a.dim];
        arrays.push((
            "oos_examples",
            Dtype::F32,
            rows(&a.examples),
            f32_bytes(&a.examples),
        ));
        arrays.push((
            "centroids",
            Dtype::F32,
            rows(&a.centroids),
            f32_bytes(&a.centroids),
        ));
    }
    let file = if arrays.is_empty() {
        None
    } else {
        let mut views = Vec::new();
        for (name, dtype, shape, bytes) in &arrays {
            views.push((*name, tensor_view(dir, *dtype, shape.clone(), bytes)?));
        }
        let bytes = safetensors::serialize(views, None)
            .map_err(|e| Error::model(dir, format!("serialising the novelty score: {e}")))?;
        Some(write_file(dir, NOVELTY_FILE, &bytes)?)
    };
    Ok(NoveltyManifest {
        kind,
        center: novelty.center,
        scale: novelty.scale,
        shrinkage,
        affinity_rows: novelty
            .affinity
            .as_ref()
            .map_or(0, |a| a.examples.len() / a.dim),
        file,
    })
}

/// Reads the novelty score of the bundle in `dir` (its checksum was verified at load).
pub fn read_novelty(dir: &Path, n: &NoveltyManifest) -> Result<Novelty> {
    if !(n.scale > 0.0 && n.scale.is_finite() && n.center.is_finite()) {
        return Err(Error::model(
            dir,
            format!(
                "novelty standardisation {} ± {} is not usable",
                n.center, n.scale
            ),
        ));
    }
    let Some(f) = &n.file else {
        if n.kind == NoveltyKind::MaxLogit && n.affinity_rows == 0 {
            return Ok(Novelty {
                scorer: NoveltyScorer::MaxLogit,
                center: n.center,
                scale: n.scale,
                affinity: None,
            });
        }
        return Err(Error::model(dir, "the novelty score lists no file"));
    };
    let file = dir.join(&f.path);
    let bytes = fs::read(&file).map_err(|e| Error::io(&file, e))?;
    let st = SafeTensors::deserialize(&bytes)
        .map_err(|e| Error::model(&file, format!("not a safetensors file: {e}")))?;
    let (scorer, dim) = match n.kind {
        NoveltyKind::MaxLogit => {
            return Err(Error::model(
                &file,
                "a max-logit novelty score has no arrays",
            ))
        }
        NoveltyKind::NearestRow => {
            let t = st
                .tensor("nearest_rows")
                .map_err(|e| Error::model(&file, format!("tensor `nearest_rows`: {e}")))?;
            let shape = t.shape().to_vec();
            if t.dtype() != Dtype::F16 || shape.len() != 2 || shape[0] == 0 || shape[1] == 0 {
                return Err(Error::model(
                    &file,
                    format!(
                        "`nearest_rows` is {:?} {shape:?}, expected f16 [rows, dim]",
                        t.dtype()
                    ),
                ));
            }
            let rows = f16_values(t.data());
            (
                NoveltyScorer::NearestRow(NearestRow {
                    dim: shape[1],
                    rows,
                }),
                shape[1],
            )
        }
        NoveltyKind::RelativeMahalanobis => {
            let m = Mahalanobis::from_tensors(|name| tensor_f32(&st, name, &file).ok())
                .map_err(|why| Error::model(&file, why))?;
            let dim = m.dim;
            (NoveltyScorer::RelativeMahalanobis(m), dim)
        }
    };
    let affinity = if n.affinity_rows > 0 {
        let array = |name: &str| -> Result<(usize, Vec<f32>)> {
            let (shape, v) = tensor_f32(&st, name, &file)?;
            if shape.len() != 2 || shape[1] != dim {
                return Err(Error::model(
                    &file,
                    format!("`{name}` has shape {shape:?}, expected [rows, {dim}]"),
                ));
            }
            Ok((shape[0], v))
        };
        let (rows, examples) = array("oos_examples")?;
        if rows != n.affinity_rows {
            return Err(Error::model(
                &file,
                format!(
                    "`oos_examples` has {rows} rows, the manifest says {}",
                    n.affinity_rows
                ),
            ));
        }
        Some(Affinity {
            dim,
            examples,
            centroids: array("centroids")?.1,
        })
    } else {
        None
    };
    Ok(Novelty {
        scorer,
        center: n.center,
        scale: n.scale,
        affinity,
    })
}

fn tensor_view<'a>(
    dir: &Path,
    dtype: Dtype,
    shape: Vec<usize>,
    bytes: &'a [u8],
) -> Result<TensorView<'a>> {
    TensorView::new(dtype, shape, bytes)
        .map_err(|e| Error::model(dir, format!("building the drift profile: {e}")))
}

/// Reads the drift reference profile of the bundle in `dir` (its checksum was verified at load).
pub fn read_profile(dir: &Path, stored: &StoredProfile) -> Result<Profile> {
    let file = dir.join(&stored.file.path);
    let bytes = fs::read(&file).map_err(|e| Error::io(&file, e))?;
    let st = SafeTensors::deserialize(&bytes)
        .map_err(|e| Error::model(&file, format!("not a safetensors file: {e}")))?;
    let values = |name: &str| -> Result<Vec<f32>> {
        let (shape, v) = tensor_f32(&st, name, &file)?;
        if shape != [stored.sample_rows] {
            return Err(Error::model(
                &file,
                format!(
                    "`{name}` has shape {shape:?}, the manifest says [{}]",
                    stored.sample_rows
                ),
            ));
        }
        Ok(v)
    };
    let halves = |name: &str, rows: usize| -> Result<Vec<f32>> {
        if rows == 0 {
            return Ok(Vec::new());
        }
        let t = st
            .tensor(name)
            .map_err(|e| Error::model(&file, format!("tensor `{name}`: {e}")))?;
        if t.dtype() != Dtype::F16 || t.shape() != [rows, stored.embedding_dim] {
            return Err(Error::model(
                &file,
                format!(
                    "`{name}` is {:?} {:?}, the manifest says F16 [{rows}, {}]",
                    t.dtype(),
                    t.shape(),
                    stored.embedding_dim
                ),
            ));
        }
        Ok(f16_values(t.data()))
    };
    Ok(Profile {
        summary: stored.summary.clone(),
        sample: Sample {
            confidence: values("confidence")?,
            length: values("length")?,
            oov: values("oov_rate")?,
            correct: values("correct")?,
            embeddings: halves("embeddings", stored.embedding_rows)?,
            novelty: halves("novelty_embeddings", stored.novelty_rows)?,
            novelty_scores: if stored.novelty_rows == 0 {
                Vec::new()
            } else {
                let (shape, v) = tensor_f32(&st, "novelty_scores", &file)?;
                if shape != [stored.novelty_rows] {
                    return Err(Error::model(
                        &file,
                        format!(
                            "`novelty_scores` has shape {shape:?}, the manifest says [{}]",
                            stored.novelty_rows
                        ),
                    ));
                }
                v
            },
            dim: stored.embedding_dim,
        },
    })
}

/// The bundle checksum: sha256 over each component file's name and sha256 (sorted), then the
/// calibration, ensemble weights, threshold and labels.
pub fn bundle_checksum(m: &Manifest) -> String {
    let mut lines: Vec<String> = m
        .components
        .iter()
        .flat_map(|c| {
            c.files
                .values()
                .map(|f| format!("{} {}\n", f.path, f.sha256))
        })
        .collect();
    lines.sort();
    // Everything else that changes an answer: calibration, ensemble weights, threshold, labels.
    for c in &m.components {
        lines.push(format!(
            "{} weight {} temperature {}\n",
            c.kind, c.weight, c.temperature
        ));
    }
    lines.push(format!("ensemble temperature {}\n", m.ensemble_temperature));
    lines.push(format!("cascade {:?}\n", m.cascade_threshold));
    lines.push(format!("abstain {}\n", m.abstain.threshold));
    lines.push(format!("labels {}\n", m.labels.join("\u{1f}")));
    // Bundles from before drift-check (and the abstain rule) lack these and keep their checksum.
    let json_line = |name: &str, json: String| format!("{name} {}\n", sha256_hex(json.as_bytes()));
    if let Some(p) = &m.profile {
        let json = serde_json::to_string(p).expect("a profile always serialises");
        lines.push(json_line("profile", json));
    }
    if let Some(n) = &m.novelty {
        lines.push(json_line(
            "novelty",
            serde_json::to_string(n).expect("serialises"),
        ));
    }
    if let Some(r) = &m.rule {
        lines.push(json_line(
            "rule",
            serde_json::to_string(r).expect("serialises"),
        ));
    }
    if let Some(o) = &m.out_of_scope {
        lines.push(json_line(
            "out_of_scope",
            serde_json::to_string(o).expect("serialises"),
        ));
    }
    sha256_hex(lines.concat().as_bytes())
}

/// Where a bundle is about to be written: checked before any expensive work.
pub fn check_destination(dir: &Path, force: bool) -> Result<()> {
    if dir.exists() && !force {
        return Err(Error::Exists {
            path: dir.to_path_buf(),
        });
    }
    if dir.exists() && !dir.is_dir() {
        return Err(Error::Output {
            path: dir.to_path_buf(),
            message: "exists and is not a directory".into(),
        });
    }
    Ok(())
}

/// The files `save`'s `fill` wrote, as the manifest lists them.
pub struct Filled {
    pub components: Vec<ComponentManifest>,
    pub profile: Option<StoredProfile>,
    pub novelty: Option<NoveltyManifest>,
}

/// Writes a bundle atomically: `fill` writes the component files (and the drift profile's and
/// the novelty score's) into a temporary directory and returns their manifest entries; the
/// manifest goes last, then the directory is renamed.
pub fn save(
    dir: &Path,
    force: bool,
    mut manifest: Manifest,
    fill: impl FnOnce(&Path) -> Result<Filled>,
) -> Result<Manifest> {
    check_destination(dir, force)?;
    let tmp = TempDir::beside(dir)?;
    let filled = fill(tmp.path())?;
    manifest.components = filled.components;
    manifest.profile = filled.profile;
    manifest.novelty = filled.novelty;
    manifest.checksum = bundle_checksum(&manifest);
    let json = serde_json::to_vec_pretty(&manifest).expect("a manifest always serialises");
    write_file(tmp.path(), MANIFEST, &json)?;
    tmp.commit(dir, force)?;
    Ok(manifest)
}

/// Reads and verifies a bundle's manifest: format version and every file's checksum.
pub fn load_manifest(dir: &Path) -> Result<Manifest> {
    let mpath = dir.join(MANIFEST);
    if !dir.is_dir() {
        return Err(Error::model(
            dir,
            "no such model directory (train one with `cqr train DATA -o DIR`)",
        ));
    }
    let bytes = fs::read(&mpath).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => {
            Error::model(dir, "not a cqr model bundle: it has no manifest.json")
        }
        _ => Error::io(&mpath, e),
    })?;
    let raw: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| {
        Error::model(
            &mpath,
            format!(
                "invalid JSON at line {}, column {}: {e}",
                e.line(),
                e.column()
            ),
        )
    })?;
    let found = raw.get("format_version").and_then(|v| v.as_u64());
    match found {
        Some(v) if v > u64::from(FORMAT_VERSION) => {
            return Err(Error::model(
                &mpath,
                format!(
                "format version {v} is newer than this cqr ({}) reads (up to {FORMAT_VERSION}); \
                     upgrade cqr",
                env!("CARGO_PKG_VERSION")
            ),
            ))
        }
        None => {
            return Err(Error::model(
                &mpath,
                "no `format_version`: not a cqr manifest",
            ))
        }
        _ => {}
    }
    let manifest: Manifest = serde_json::from_value(raw)
        .map_err(|e| Error::model(&mpath, format!("invalid manifest: {e}")))?;
    let profile_file = manifest.profile.as_ref().map(|p| &p.file);
    let novelty_file = manifest.novelty.as_ref().and_then(|n| n.file.as_ref());
    let files = manifest.components.iter().flat_map(|c| c.files.values());
    for f in files.chain(profile_file).chain(novelty_file) {
        if f.path.contains('/') || f.path.contains('\\') || f.path.starts_with('.') {
            return Err(Error::model(
                dir,
                format!("manifest names a file outside the bundle: `{}`", f.path),
            ));
        }
        let p = dir.join(&f.path);
        if !p.is_file() {
            return Err(Error::model(
                dir,
                format!("`{}` is missing: the bundle is incomplete", f.path),
            ));
        }
        let found = sha256_file(&p)?;
        if found != f.sha256 {
            return Err(Error::Checksum {
                path: dir.to_path_buf(),
                file: f.path.clone(),
                expected: f.sha256.clone(),
                found,
            });
        }
    }
    if bundle_checksum(&manifest) != manifest.checksum {
        return Err(Error::model(
            dir,
            "the manifest checksum does not match its files",
        ));
    }
    if manifest.labels.is_empty() {
        return Err(Error::model(dir, "the manifest lists no labels"));
    }
    Ok(manifest)
}
