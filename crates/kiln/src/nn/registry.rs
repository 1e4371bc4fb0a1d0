//! The closed set of layer types, one line each: variant, config type, TOML `type` (also the prefix of
//! automatic names: `dense`, `dense_1`), Keras class name, and older spellings. The `layers!` macro makes
//! `LayerConfig` (the serde enum TOML files and saved models hold) and its dispatch to `LayerSpec`, so that
//! adding a layer is its own file under layers/ plus one line here.

use super::Activation;
use super::layers::*;
use super::spec::LayerSpec;
use serde::{Deserialize, Serialize};

macro_rules! layers {
    ($($variant:ident($ty:ty) = $tag:literal, $class:literal $(, alias $alias:literal)*;)*) => {
        /// A layer's config: what a TOML `[[model.layers]]` table holds (`type = "dense"` names the variant).
        #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
        #[serde(tag = "type")]
        pub enum LayerConfig {
            $(
                #[serde(rename = $tag $(, alias = $alias)*)]
                $variant($ty),
            )*
        }

        impl LayerConfig {
            /// The Keras class name, for summaries and messages.
            pub fn class_name(&self) -> &'static str {
                match self { $(LayerConfig::$variant(_) => $class,)* }
            }

            /// The prefix of automatic names ("dense", "dense_1", ...), as Keras.
            pub fn base_name(&self) -> &'static str {
                match self { $(LayerConfig::$variant(_) => $tag,)* }
            }

            pub fn name(&self) -> Option<&str> {
                match self { $(LayerConfig::$variant(c) => c.name.as_deref(),)* }
            }

            pub(crate) fn set_name(&mut self, name: String) {
                match self { $(LayerConfig::$variant(c) => c.name = Some(name),)* }
            }

            pub(crate) fn spec(&self) -> &dyn LayerSpec {
                match self { $(LayerConfig::$variant(c) => c,)* }
            }
        }

        $(
            impl From<$ty> for LayerConfig {
                fn from(c: $ty) -> LayerConfig {
                    LayerConfig::$variant(c)
                }
            }

            impl $ty {
                pub fn name(mut self, name: &str) -> Self {
                    self.name = Some(name.to_string());
                    self
                }
            }
        )*
    };
}

layers! {
    Dense(Dense) = "dense", "Dense";
    Conv2d(Conv2D) = "conv2d", "Conv2D", alias "conv2D";
    MaxPooling2d(MaxPooling2D) = "max_pooling2d", "MaxPooling2D", alias "max_pool2d";
    AveragePooling2d(AveragePooling2D) = "average_pooling2d", "AveragePooling2D", alias "avg_pool2d";
    Flatten(Flatten) = "flatten", "Flatten";
    Dropout(Dropout) = "dropout", "Dropout";
    Activation(ActivationLayer) = "activation", "Activation";
    BatchNormalization(BatchNormalization) = "batch_normalization", "BatchNormalization";
    CategoryEmbedding(CategoryEmbedding) = "category_embedding", "CategoryEmbedding";
    Embedding(Embedding) = "embedding", "Embedding";
    Lstm(Lstm) = "lstm", "LSTM";
    Gru(Gru) = "gru", "GRU";
    Conv1d(Conv1D) = "conv1d", "Conv1D", alias "conv1D";
    GlobalMaxPooling1d(GlobalMaxPooling1D) = "global_max_pooling1d", "GlobalMaxPooling1D";
    GlobalAveragePooling1d(GlobalAveragePooling1D) = "global_average_pooling1d", "GlobalAveragePooling1D";
    SimpleRnn(SimpleRnn) = "simple_rnn", "SimpleRNN";
    Bidirectional(Bidirectional) = "bidirectional", "Bidirectional";
    Add(Add) = "add", "Add";
    Multiply(Multiply) = "multiply", "Multiply";
    Concatenate(Concatenate) = "concatenate", "Concatenate";
    Dot(Dot) = "dot", "Dot";
    LayerNormalization(LayerNormalization) = "layer_normalization", "LayerNormalization";
    MultiHeadAttention(MultiHeadAttention) = "multi_head_attention", "MultiHeadAttention";
    PositionEmbedding(PositionEmbedding) = "position_embedding", "PositionEmbedding";
    TransformerEncoder(TransformerEncoder) = "transformer_encoder", "TransformerEncoder";
    BertEncoder(BertEncoder) = "bert_encoder", "BertEncoder";
    ColumnTokens(ColumnTokens) = "column_tokens", "ColumnTokens";
    SelectToken(SelectToken) = "select_token", "SelectToken";
}

impl LayerConfig {
    /// The activation applied last, if the layer ends with one.
    pub fn activation(&self) -> Activation {
        self.spec().activation()
    }

    /// Whether a recurrent layer outputs every step (so a padding mask still applies after it).
    pub fn returns_sequences(&self) -> bool {
        self.spec().returns_sequences()
    }
}
