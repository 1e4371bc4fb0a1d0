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
        let model = Model::load(path)?;
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, &e))?;
        let bad = |m: String| Error::format(path, m);
        let tensors = SafeTensors::deserialize(&bytes).map_err(|e| bad(format!("safetensors: {e}")))?;
        let (_, st) = SafeTensors::read_metadata(&bytes).map_err(|e| bad(format!("safetensors: {e}")))?;
        let json = st.metadata().as_ref().and_then(|m| m.get(META_KEY)).ok_or_else(|| {
            bad("a kiln model, but not a recommender (kiln recommend takes what a recommendation config trained)"
                .into())
        })?;
        let meta: Meta =
            serde_json::from_str(json).map_err(|e| bad(format!("unreadable recommender metadata ({e})")))?;
        let rows = |name: &str, enc: Option<FeatureEncoder>| -> Result<Option<(FeatureEncoder, Vec<f32>)>> {
            let Some(enc) = enc else { return Ok(None) };
            let t = tensors.tensor(name).map_err(|_| bad(format!("no `{name}` tensor")))?;
            Ok(Some((enc, crate::io::f32s_le(t.data()))))
        };
        let floats = |name: &str| -> Result<Vec<f32>> {
            let t = tensors.tensor(name).map_err(|_| bad(format!("no `{name}` tensor")))?;
            Ok(crate::io::f32s_le(t.data()))
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

/// Whether the file is a recommender (so other commands can point to `kiln recommend`); a file that cannot
/// be read, or is no safetensors file, is an error saying so.
pub fn is_recommender(path: &Path) -> Result<bool> {
    if path.is_dir() {
        return Ok(false);
    }
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, &e))?;
    let (_, m) = SafeTensors::read_metadata(&bytes)
        .map_err(|e| Error::format(path, format!("not a kiln model: not a safetensors file ({e})")))?;
    Ok(m.metadata().as_ref().is_some_and(|m| m.contains_key(META_KEY)))
}
