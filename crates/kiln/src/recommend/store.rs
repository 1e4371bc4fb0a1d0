//! A recommender in one safetensors file: the network as every kiln model saves it; as tensors the feature
//! rows of the known users and items (`recommender.user_features`, `recommender.item_features`) and each
//! user's items in time order (`recommender.timeline_lengths`, `recommender.timeline_items`: indices, exact
//! in f32 below 2^24, which `Recommender::new` keeps to); and in the metadata (`kiln.recommender`, JSON) the
//! kind and settings, the ids in index order, the feature encoders and the items' training counts. (The
//! metadata is bounded at 100 MB by safetensors: the histories, which grow with the data, are tensors.)

use super::data::{Csr, FeatureEncoder, IdMap};
use super::{Recommender, RecommenderConfig};
use crate::model::Model;
use kiln_core::{Error, Result};
use safetensors::SafeTensors;
use serde::{Deserialize, Serialize};
use std::path::Path;

pub(crate) const META_KEY: &str = "kiln.recommender";
const USER_ROWS: &str = "recommender.user_features";
const ITEM_ROWS: &str = "recommender.item_features";
const LENGTHS: &str = "recommender.timeline_lengths";
const TIMELINE: &str = "recommender.timeline_items";

#[derive(Serialize, Deserialize)]
struct Meta {
    config: RecommenderConfig,
    users: Vec<String>,
    items: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    user_features: Option<FeatureEncoder>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    item_features: Option<FeatureEncoder>,
    popularity: Vec<u32>,
}

impl Recommender {
    /// Saves to one file (written atomically).
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let meta = Meta {
            config: self.config.clone(),
            users: self.users.ids().to_vec(),
            items: self.items.ids().to_vec(),
            user_features: self.user_features.as_ref().map(|f| f.0.clone()),
            item_features: self.item_features.as_ref().map(|f| f.0.clone()),
            popularity: self.popularity.clone(),
        };
        let json = serde_json::to_string(&meta)
            .map_err(|e| Error::Invalid(format!("cannot describe the recommender: {e}")))?;
        let lengths: Vec<f32> = self.timeline.iter().map(|t| t.len() as f32).collect();
        let items: Vec<f32> = self.timeline.iter().flatten().map(|&i| i as f32).collect();
        let mut extra: Vec<(String, &[f32])> = vec![(LENGTHS.into(), &lengths), (TIMELINE.into(), &items)];
        if let Some((_, rows)) = &self.user_features {
            extra.push((USER_ROWS.into(), rows));
        }
        if let Some((_, rows)) = &self.item_features {
            extra.push((ITEM_ROWS.into(), rows));
        }
        let bytes = self.model.to_safetensors(path, &extra, vec![(META_KEY.into(), json)])?;
        crate::io::write_atomic(path, &bytes)
    }

    /// Loads what `save` wrote; another kiln model is an error saying so.
    pub fn load(path: impl AsRef<Path>) -> Result<Recommender> {
        let path = path.as_ref();
        if path.is_dir() {
            // Model::load's message: a run folder names its model file.
            Model::load(path)?;
        }
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, &e))?;
        let model = Model::from_bytes(path, &bytes)?;
        let bad = |m: String| Error::format(path, m);
        let tensors = SafeTensors::deserialize(&bytes).map_err(|e| bad(format!("safetensors: {e}")))?;
        let (_, st) = SafeTensors::read_metadata(&bytes).map_err(|e| bad(format!("safetensors: {e}")))?;
        let json = st.metadata().as_ref().and_then(|m| m.get(META_KEY)).ok_or_else(|| {
            bad("a kiln model, but not a recommender (kiln recommend takes what a recommendation config trained)"
                .into())
        })?;
        let meta: Meta =
            serde_json::from_str(json).map_err(|e| bad(format!("unreadable recommender metadata ({e})")))?;
        let floats = |name: &str| -> Result<Vec<f32>> {
            crate::checkpoint::f32_tensor(&tensors, name).ok_or_else(|| bad(format!("no f32 `{name}` tensor")))
        };
        let rows = |name: &str, enc: Option<FeatureEncoder>| -> Result<Option<(FeatureEncoder, Vec<f32>)>> {
            enc.map(|enc| Ok((enc, floats(name)?))).transpose()
        };
        let (lengths, flat) = (floats(LENGTHS)?, floats(TIMELINE)?);
        let whole = |v: f32| v >= 0.0 && v.fract() == 0.0 && v < (1u32 << 24) as f32;
        if lengths.len() != meta.users.len()
            || !lengths.iter().chain(&flat).all(|&v| whole(v))
            || lengths.iter().map(|&l| l as usize).sum::<usize>() != flat.len()
        {
            return Err(bad("the recommender's users and their histories do not agree (a damaged file?)".into()));
        }
        let mut timeline = Vec::with_capacity(lengths.len());
        let mut at = 0;
        for &l in &lengths {
            timeline.push(flat[at..at + l as usize].iter().map(|&i| i as u32).collect::<Vec<u32>>());
            at += l as usize;
        }
        let (users, items) = (IdMap::from_ids(meta.users), IdMap::from_ids(meta.items));
        let r = Recommender {
            model,
            config: meta.config,
            user_features: rows(USER_ROWS, meta.user_features)?,
            item_features: rows(ITEM_ROWS, meta.item_features)?,
            seen: Csr::new(
                users.len(),
                timeline.iter().enumerate().flat_map(|(u, l)| l.iter().map(move |&i| (u as u32, i))),
            ),
            timeline,
            popularity: meta.popularity,
            users,
            items,
        };
        let n = r.items.len() as u32;
        let fits = |f: &Option<(FeatureEncoder, Vec<f32>)>, ids: usize| {
            f.as_ref().is_none_or(|(e, rows)| rows.len() == (ids + 1) * e.width())
        };
        if r.seen.values.iter().any(|&i| i >= n)
            || r.popularity.len() != r.items.len()
            || !fits(&r.user_features, r.users.len())
            || !fits(&r.item_features, r.items.len())
        {
            return Err(bad("the recommender's ids, history and feature rows do not agree (a damaged file?)".into()));
        }
        Ok(r)
    }
}

/// Whether the file is a recommender (so other commands can point to `kiln recommend`), from its header
/// alone: the loader that follows reads the file once. A file that cannot be read, or whose header is no
/// safetensors header, is an error saying so.
pub fn is_recommender(path: &Path) -> Result<bool> {
    use std::io::Read;
    if path.is_dir() {
        return Ok(false);
    }
    let not = |why: String| Error::format(path, format!("not a kiln model: not a safetensors file ({why})"));
    let mut f = std::fs::File::open(path).map_err(|e| Error::io(path, &e))?;
    let mut len = [0u8; 8];
    f.read_exact(&mut len).map_err(|e| not(e.to_string()))?;
    // safetensors' own bound on a header.
    let n = u64::from_le_bytes(len);
    if n > 100_000_000 {
        return Err(not(format!("a header of {n} bytes")));
    }
    let mut header = vec![0; n as usize];
    f.read_exact(&mut header).map_err(|e| not(format!("the header: {e}")))?;
    let v: serde_json::Value = serde_json::from_slice(&header).map_err(|e| not(format!("the header: {e}")))?;
    Ok(v.get("__metadata__").and_then(|m| m.get(META_KEY)).is_some())
}
