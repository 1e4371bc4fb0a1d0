//! Every optimizer over six steps against Keras's (fixtures from tools/make_reference_fixtures.py): the same
//! starting parameters and the same fixed gradient sequence, then the parameters and the optimizer's state
//! (momentum, Adam's two moments, RMSprop's average, Adagrad's accumulator) compared after every step. One
//! step cannot tell a bias correction or a momentum convention apart; several can.
//!
//! Both sides compute in f32; agreement is required to 1e-5 relative.

use kiln::core::{Param, Shape};
use kiln::optim::{Adagrad, Adam, AdamW, Optimizer, OptimizerConfig, RmsProp, Sgd};
use kiln::schedule::Schedule;
use serde_json::Value;

const RTOL: f32 = 1e-5;
const ATOL: f32 = 1e-8;
const NAMES: [&str; 2] = ["w", "b"];

fn load() -> Value {
    let path = format!("{}/tests/fixtures/optimizers.json", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).expect("fixture is JSON")
}

fn shape(v: &Value) -> Vec<usize> {
    v["shape"].as_array().unwrap().iter().map(|d| d.as_u64().unwrap() as usize).collect()
}

fn data(v: &Value) -> Vec<f32> {
    v["data"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect()
}

fn assert_close(what: &str, got: &[f32], want: &[f32], rtol: f32) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (&a, &b)) in got.iter().zip(want).enumerate() {
        let tol = rtol * a.abs().max(b.abs()) + ATOL;
        assert!((a - b).abs() <= tol, "{what}[{i}]: kiln {a} vs Keras {b}");
    }
}

/// Runs `config` (with `schedule`, set before each step as fit does) through the fixture's gradients and
/// compares with Keras's run `case`. A frozen parameter sits between the two trainable ones: it must not
/// move, and must not shift which state belongs to which parameter.
fn check(fx: &Value, case: &str, config: OptimizerConfig, schedule: Option<Schedule>) {
    let want = &fx[case]["steps"];
    assert!(want.is_array(), "fixture has no case `{case}`");
    let frozen = vec![0.25f32, -0.5];
    let mut params: Vec<Param<f32>> = Vec::new();
    for (i, name) in NAMES.iter().enumerate() {
        let init = &fx["initial"][name];
        params.push(Param {
            name: name.to_string(),
            shape: Shape::new(&shape(init)).unwrap(),
            value: data(init),
            trainable: true,
            quant: None,
        });
        if i == 0 {
            params.push(Param {
                name: "frozen".into(),
                shape: Shape::new(&[2]).unwrap(),
                value: frozen.clone(),
                trainable: false,
                quant: None,
            });
        }
    }
    let index = [0, 2]; // of w and b in `params`
    let base_lr = config.learning_rate();
    let mut opt = Optimizer::new(config);
    let steps = fx["gradients"].as_array().unwrap();
    assert!(steps.len() >= 5, "fixture has {} steps", steps.len());
    for (s, g) in steps.iter().enumerate() {
        if let Some(sched) = &schedule {
            opt.config.set_learning_rate(sched.at(base_lr, opt.iterations()));
        }
        let mut grads = vec![data(&g["w"]), vec![1.0, 1.0], data(&g["b"])];
        opt.step(&mut params, &mut grads);
        assert_eq!(params[1].value, frozen, "{case}: the frozen parameter moved at step {}", s + 1);
        let (slot1, slot2, t) = opt.state();
        assert_eq!(t, s as u64 + 1);
        for (name, &i) in NAMES.iter().zip(&index) {
            let w = &want[s][name];
            let at = format!("{case} step {} {name}", s + 1);
            assert_close(&format!("{at} value"), &params[i].value, &data(&w["value"]), RTOL);
            for (slot, got) in [("slot1", &slot1[i]), ("slot2", &slot2[i])] {
                if !w[slot].is_null() {
                    assert_close(&format!("{at} {slot}"), got, &data(&w[slot]), RTOL);
                }
            }
        }
    }
}

#[test]
fn sgd_plain_momentum_and_nesterov_match_keras() {
    let fx = load();
    check(&fx, "sgd", Sgd::new(0.1).into(), None);
    check(&fx, "sgd_momentum", Sgd::new(0.1).momentum(0.9).into(), None);
    check(&fx, "sgd_nesterov", Sgd::new(0.1).momentum(0.9).nesterov(true).into(), None);
}

#[test]
fn adam_moments_and_bias_correction_match_keras() {
    let fx = load();
    check(&fx, "adam", Adam::new(0.1).into(), None);
    let custom = Adam { learning_rate: 0.05, beta_1: 0.5, beta_2: 0.9, epsilon: 1e-3, lazy: false };
    check(&fx, "adam_betas", custom.into(), None);
}

#[test]
fn adamw_decoupled_decay_matches_keras() {
    check(&load(), "adamw", AdamW::new(0.1, 0.2).into(), None);
}

#[test]
fn rmsprop_with_and_without_momentum_matches_keras() {
    let fx = load();
    check(&fx, "rmsprop", RmsProp::new(0.01).into(), None);
    let with_momentum = RmsProp { learning_rate: 0.01, rho: 0.8, momentum: 0.5, ..Default::default() };
    check(&fx, "rmsprop_momentum", with_momentum.into(), None);
}

#[test]
fn adagrad_accumulator_matches_keras() {
    check(&load(), "adagrad", Adagrad::new(0.1).into(), None);
}

#[test]
fn schedules_over_steps_match_keras() {
    let fx = load();
    let cosine = Schedule::Cosine { decay_steps: 4, warmup_steps: 2, alpha: 0.1 };
    check(&fx, "adam_cosine_warmup", Adam::new(0.1).into(), Some(cosine));
    let exponential = Schedule::Exponential { decay_steps: 2, decay_rate: 0.5, staircase: false };
    check(&fx, "sgd_momentum_exponential", Sgd::new(0.1).momentum(0.9).into(), Some(exponential));
}

/// Lazy Adam leaves the rows of a matrix that a step's gradient did not reach (weights and moments), and
/// moves the others exactly as Adam does; Adam itself moves an untouched row by its momentum.
#[test]
fn lazy_adam_skips_rows_without_gradient_and_matches_adam_elsewhere() {
    let table = || Param {
        name: "table".into(),
        shape: Shape::new(&[3, 2]).unwrap(),
        value: vec![0.1, 0.2, 0.3, 0.4, 0.5, 0.6],
        trainable: true,
        quant: None,
    };
    // Step 1 reaches every row; step 2 leaves row 1 out.
    let grads = [vec![0.5f32, -1.0, 0.25, 0.75, -0.5, 1.0], vec![0.3f32, 0.1, 0.0, 0.0, -0.2, 0.4]];
    let run = |lazy: bool| {
        let mut params = vec![table()];
        let mut opt = Optimizer::new(Adam::new(0.1).lazy(lazy).into());
        let mut after = Vec::new();
        for g in &grads {
            let mut gs = vec![g.clone()];
            opt.step(&mut params, &mut gs);
            after.push(params[0].value.clone());
        }
        let (m, v, _) = opt.state();
        (after, m[0].clone(), v[0].clone())
    };
    let ((dense, dm, dv), (lazy, lm, lv)) = (run(false), run(true));
    assert_eq!(dense[0], lazy[0], "a step that reaches every row is Adam's");
    assert_eq!(lazy[1][2..4], lazy[0][2..4], "row 1 kept its weights");
    // Its moments are still step 1's: m = (1 − β₁)·g, v = (1 − β₂)·g².
    for (k, g) in [(2, 0.25f32), (3, 0.75)] {
        assert!((lm[k] - 0.1 * g).abs() < 1e-7 && (lv[k] - 0.001 * g * g).abs() < 1e-8, "{k}: {} {}", lm[k], lv[k]);
    }
    assert_ne!(dense[1][2..4], dense[0][2..4], "Adam moves the untouched row by its momentum");
    assert_eq!((dense[1][..2].to_vec(), dense[1][4..].to_vec()), (lazy[1][..2].to_vec(), lazy[1][4..].to_vec()));
    assert!(dm[2] != lm[2] && dv[2] != lv[2], "Adam decays the untouched row's moments; lazy Adam keeps them");
}
