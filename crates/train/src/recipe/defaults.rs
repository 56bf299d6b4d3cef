//! The defaults the app's training wizard is served, from the same source every run starts from.

use serde::Serialize;

use super::{limits, short, Method, RunConfig};
use crate::methods::pretrain::Preset;
use crate::trainer::TrainSettings;

/// What the app's training wizard starts from: the defaults of every method, a short first run,
/// and the ranges its inputs allow. Written from Rust into `ui/src/bindings/train-defaults.json`
/// (by this crate's tests), so the app and the command line share one source.
#[derive(Debug, Clone, Serialize)]
pub struct TrainDefaults {
    /// A first look: few steps on short sequences, minutes on a CPU.
    pub wizard: WizardDefaults,
    pub methods: Vec<MethodDefaults>,
    pub limits: Limits,
}

#[derive(Debug, Clone, Serialize)]
pub struct WizardDefaults {
    pub max_steps: u64,
    pub batch_size: usize,
    pub seq_len: usize,
}

/// One method's defaults; settings it does not have are left out.
#[derive(Debug, Clone, Serialize)]
pub struct MethodDefaults {
    pub method: Method,
    pub label: &'static str,
    pub lr: f64,
    /// The learning rate as the app shows it (2e-4).
    pub lr_text: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rank: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alpha: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub virtual_tokens: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub preset: Option<Preset>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Limits {
    pub rank: (usize, usize),
    pub alpha_max: f64,
    pub virtual_tokens: (usize, usize),
    pub seq_len: (usize, usize),
}

impl TrainDefaults {
    pub fn get() -> TrainDefaults {
        let methods = Method::ALL
            .into_iter()
            .map(|method| {
                let c = RunConfig::for_method(method);
                let adapters = matches!(method, Method::Lora | Method::Qlora);
                MethodDefaults {
                    method,
                    label: method.label(),
                    lr: c.train.lr,
                    lr_text: short(c.train.lr),
                    rank: adapters.then_some(c.lora.rank),
                    alpha: adapters.then_some(c.lora.alpha),
                    virtual_tokens: (method == Method::SoftPrompt)
                        .then_some(c.soft_prompt.num_virtual_tokens),
                    preset: (method == Method::Pretrain).then_some(c.pretrain.preset),
                }
            })
            .collect();
        TrainDefaults {
            wizard: WizardDefaults {
                max_steps: 30,
                batch_size: TrainSettings::default().batch_size,
                seq_len: 256,
            },
            methods,
            limits: Limits {
                rank: limits::RANK,
                alpha_max: limits::ALPHA_MAX,
                virtual_tokens: limits::VIRTUAL_TOKENS,
                seq_len: limits::SEQ_LEN,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    #[test]
    fn the_served_defaults_are_the_runs_own() {
        let d = TrainDefaults::get();
        assert_eq!(d.methods.len(), Method::ALL.len());
        for m in &d.methods {
            let c = RunConfig::for_method(m.method);
            assert_eq!(m.lr, c.train.lr);
            assert_eq!(m.lr_text.parse::<f64>().unwrap(), c.train.lr);
        }
        assert_eq!(d.methods[0].rank, Some(16));
        assert_eq!(d.methods[2].virtual_tokens, Some(20));
        assert_eq!(d.methods[2].lr_text, "3e-2");
        // The wizard's first run passes the same check as any run.
        let mut c = RunConfig::for_method(Method::Lora);
        c.train.max_steps = d.wizard.max_steps;
        c.seq_len = d.wizard.seq_len;
        c.validate().unwrap();
    }

    /// Writes the defaults the app's training wizard reads (like the generated bindings, CI
    /// fails when the committed file differs).
    #[test]
    fn export_train_defaults() {
        let path =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../ui/src/bindings/train-defaults.json");
        let json = serde_json::to_string_pretty(&TrainDefaults::get()).unwrap() + "\n";
        if std::fs::read_to_string(&path).ok().as_deref() != Some(json.as_str()) {
            std::fs::write(&path, json).unwrap();
        }
    }
}
