//! A recommender in one safetensors file: the network as every kiln model saves it, the feature rows of the
//! known users and items as tensors (`recommender.user_features`, `recommender.item_features`), and in the
//! metadata (`kiln.recommender`, JSON) the kind and settings, the ids in index order, the feature encoders,
//! each user's items and the items' training counts.

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

#[derive(Serialize, Deserialize)]
struct Meta {
    config: RecommenderConfig,
    users: Vec<String>,
    items: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    user_features: Option<FeatureEncoder>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    item_features: Option<FeatureEncoder>,
    /// Each user's items by index, in time order.
    timeline: Vec<Vec<u32>>,
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
            timeline: self.timeline.clone(),
            popularity: self.popularity.clone(),
        };
        let json = serde_json::to_string(&meta)
            .map_err(|e| Error::Invalid(format!("cannot describe the recommender: {e}")))?;
        let mut extra: Vec<(String, &[f32])> = Vec::new();
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
        if meta.timeline.len() != meta.users.len() {
            return Err(bad("the recommender's users and their histories do not agree (a damaged file?)".into()));
        }
        let (users, items) = (IdMap::from_ids(meta.users), IdMap::from_ids(meta.items));
        let r = Recommender {
            model,
            config: meta.config,
            user_features: rows(USER_ROWS, meta.user_features)?,
            item_features: rows(ITEM_ROWS, meta.item_features)?,
            seen: Csr::new(
                users.len(),
                meta.timeline.iter().enumerate().flat_map(|(u, l)| l.iter().map(move |&i| (u as u32, i))),
            ),
            timeline: meta.timeline,
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
