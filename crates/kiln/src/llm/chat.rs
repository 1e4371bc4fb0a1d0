//! A conversation as the model was trained to read it: the GGUF file's Jinja chat template
//! (`tokenizer.chat_template`, the same as Hugging Face's tokenizer_config.json) rendered with minijinja over
//! the messages, `add_generation_prompt` set so the prompt ends where the assistant's turn begins. For
//! SmolLM2 that is ChatML:
//!
//! ```text
//! <|im_start|>system\nYou are ...<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n
//! ```
//!
//! tests/suite/llm.rs checks the rendering against transformers' `apply_chat_template` on the same file.

use crate::{Error, Result};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    /// `system`, `user` or `assistant`.
    pub role: String,
    pub content: String,
}

impl Message {
    pub fn new(role: &str, content: &str) -> Message {
        Message { role: role.into(), content: content.into() }
    }
    pub fn system(content: &str) -> Message {
        Message::new("system", content)
    }
    pub fn user(content: &str) -> Message {
        Message::new("user", content)
    }
    pub fn assistant(content: &str) -> Message {
        Message::new("assistant", content)
    }
}

/// `template` rendered over `messages`, ending with the assistant's turn opened.
pub fn render(template: &str, messages: &[Message], bos: &str, eos: &str) -> Result<String> {
    let mut env = minijinja::Environment::new();
    // Templates raise errors through this function (Hugging Face defines it the same way).
    env.add_function("raise_exception", |msg: String| -> std::result::Result<String, minijinja::Error> {
        Err(minijinja::Error::new(minijinja::ErrorKind::InvalidOperation, msg))
    });
    // Python's str methods that templates use.
    env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
    env.add_template("chat", template)
        .map_err(|e| Error::Data(format!("the model's chat template does not parse ({e})")))?;
    let ctx = minijinja::context! {
        messages => messages,
        add_generation_prompt => true,
        bos_token => bos,
        eos_token => eos,
    };
    env.get_template("chat")
        .and_then(|t| t.render(ctx))
        .map_err(|e| Error::Data(format!("the model's chat template fails on this conversation ({e})")))
}
