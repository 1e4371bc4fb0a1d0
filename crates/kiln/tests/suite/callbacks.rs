//! Callbacks against Keras: EarlyStopping and ReduceLROnPlateau driven over the same sequences of epoch
//! values as Keras 3's own callbacks were (fixture made by tools/make_keras_callback_fixtures.py), plus
//! early stopping, checkpoints and logs inside a real `fit`.

use kiln::callbacks::{
    Callback, CsvLogger, EarlyStopping, JsonLogger, Mode, ModelCheckpoint, ReduceLrOnPlateau, Signal,
};
use kiln::prelude::*;
use kiln::train::EpochLog;
use serde_json::Value;

fn fixture() -> Value {
    serde_json::from_str(include_str!("../fixtures/keras_callbacks.json")).unwrap()
}

fn one_weight_model() -> Sequential {
    let mut m = Sequential::new(&[1]);
    m.add(Dense::new(1)).unwrap();
    m.compile(Sgd::new(1.0), Loss::MeanSquaredError, &[]).unwrap();
    m
}

fn log(epoch: usize, v: f64) -> EpochLog {
    EpochLog {
        epoch,
        loss: v,
        metrics: vec![],
        val_loss: Some(v),
        val_metrics: vec![],
        learning_rate: 0.0,
        seconds: 0.0,
        samples_per_second: 0.0,
    }
}

fn values(case: &Value) -> Vec<f64> {
    case["values"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect()
}

#[test]
fn early_stopping_stops_and_restores_as_keras() {
    for case in fixture()["early_stopping"].as_array().unwrap() {
        let kw = &case["kwargs"];
        let mut cb = EarlyStopping::new("val_loss")
            .patience(kw["patience"].as_u64().unwrap() as usize)
            .min_delta(kw.get("min_delta").and_then(Value::as_f64).unwrap_or(0.0))
            .restore_best_weights(kw.get("restore_best_weights").and_then(Value::as_bool).unwrap_or(false))
            .mode(if kw.get("mode").and_then(Value::as_str) == Some("max") { Mode::Max } else { Mode::Auto });
        let mut m = one_weight_model();
        cb.on_train_begin(&mut m).unwrap();
        let mut ran = 0;
        for (i, v) in values(case).into_iter().enumerate() {
            let epoch = i + 1;
            m.set_weights(&[vec![epoch as f32], vec![0.0]]).unwrap();
            ran = epoch;
            if cb.on_epoch_end(&mut m, &log(epoch, v)).unwrap() == Signal::Stop {
                break;
            }
        }
        cb.on_train_end(&mut m, &Default::default()).unwrap();
        assert_eq!(ran as u64, case["epochs_run"].as_u64().unwrap(), "epochs run, {kw}");
        assert_eq!(m.get_weights()[0][0] as f64, case["weight_after"].as_f64().unwrap(), "weight after, {kw}");
    }
}

#[test]
fn reduce_lr_on_plateau_follows_keras() {
    for case in fixture()["reduce_lr_on_plateau"].as_array().unwrap() {
        let kw = &case["kwargs"];
        let f = |k: &str, d: f64| kw.get(k).and_then(Value::as_f64).unwrap_or(d);
        let mut cb = ReduceLrOnPlateau::new("val_loss")
            .factor(f("factor", 0.1) as f32)
            .patience(f("patience", 10.0) as usize)
            .cooldown(f("cooldown", 0.0) as usize)
            .min_lr(f("min_lr", 0.0) as f32)
            .min_delta(f("min_delta", 1e-4));
        let mut m = one_weight_model();
        cb.on_train_begin(&mut m).unwrap();
        let want: Vec<f64> = case["learning_rates"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
        for (i, v) in values(case).into_iter().enumerate() {
            cb.on_epoch_end(&mut m, &log(i + 1, v)).unwrap();
            let lr = m.learning_rate().unwrap() as f64;
            assert!((lr - want[i]).abs() <= 1e-6 * want[i], "epoch {}: lr {lr}, Keras {} ({kw})", i + 1, want[i]);
        }
    }
}

/// Three noisy blobs: validation loss stops improving after a few epochs of a too-large model.
fn data() -> (Tensor, Tensor) {
    let mut rng = kiln::core::Rng::new(5);
    let n = 300;
    let (mut x, mut y) = (Vec::new(), Vec::new());
    for i in 0..n {
        let c = i % 3;
        x.push((c as f64 + 1.5 * rng.normal()) as f32);
        x.push((rng.normal()) as f32);
        y.push(c as f32);
    }
    (Tensor::new(&[n, 2], x).unwrap(), Tensor::new(&[n], y).unwrap())
}

#[test]
fn early_stopping_checkpoint_and_logs_inside_fit() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (x, y) = data();
    let mut m = Sequential::new(&[2]).seed(1);
    m.add(Dense::new(64).activation(Activation::Relu)).unwrap();
    m.add(Dense::new(3).activation(Activation::Softmax)).unwrap();
    m.compile(Adam::new(0.05), Loss::SparseCategoricalCrossentropy, &[Metric::Accuracy]).unwrap();
    let mut stop = EarlyStopping::new("val_loss").patience(2).restore_best_weights(true);
    let mut best = ModelCheckpoint::new(dir.join("best.safetensors")).save_best_only(true);
    let (mut csv, mut json) = (CsvLogger::new(dir.join("log.csv")), JsonLogger::new(dir.join("log.jsonl")));
    let opts = FitOptions { epochs: 200, batch_size: 32, validation_split: 0.3, ..Default::default() };
    let h = m.fit_with(&x, &y, opts, &mut [&mut stop, &mut best, &mut csv, &mut json]).unwrap();
    let stopped = stop.stopped_epoch().expect("stops long before 200 epochs");
    assert_eq!(h.epochs.len(), stopped);
    let (best_epoch, best_val) = stop.best().unwrap();
    assert_eq!(stopped, best_epoch + 2, "patience 2: stops two epochs after the best");
    // Restored weights are the best epoch's: the saved best model and the model agree, and re-evaluating
    // the validation part gives the best validation loss.
    let saved = Sequential::load(dir.join("best.safetensors")).unwrap();
    assert_eq!(saved.get_weights(), m.get_weights());
    let (vx, vy) = (x.slice_rows(210, 300), y.slice_rows(210, 300));
    let e = m.evaluate(&vx, &vy, 1000).unwrap();
    assert!((e.loss - best_val).abs() < 1e-5, "{} vs {best_val}", e.loss);
    assert!((saved.evaluate(&vx, &vy, 1000).unwrap().loss - best_val).abs() < 1e-5);
    let csv = std::fs::read_to_string(dir.join("log.csv")).unwrap();
    assert_eq!(csv.lines().next().unwrap(), "epoch,loss,accuracy,val_loss,val_accuracy,learning_rate");
    assert_eq!(csv.lines().count(), stopped + 1);
    let json = std::fs::read_to_string(dir.join("log.jsonl")).unwrap();
    let last: Value = serde_json::from_str(json.lines().last().unwrap()).unwrap();
    assert_eq!(last["epoch"].as_u64().unwrap() as usize, stopped);
    assert!((last["val_loss"].as_f64().unwrap() - h.epochs[stopped - 1].val_loss.unwrap()).abs() < 1e-12);
}

#[test]
fn schedules_set_the_rate_each_step_and_clipping_bounds_the_step() {
    let (x, y) = data();
    let mut m = Sequential::new(&[2]).seed(1);
    m.add(Dense::new(3).activation(Activation::Softmax)).unwrap();
    let schedule = Schedule::Piecewise { boundaries: vec![5], values: vec![0.1, 0.01] };
    m.compile_with(CompileConfig::new(Sgd::new(1.0), Loss::SparseCategoricalCrossentropy, &[]).schedule(schedule))
        .unwrap();
    let opts = FitOptions { epochs: 1, batch_size: 30, shuffle: false, ..Default::default() };
    let h = m.fit(&x, &y, opts.clone()).unwrap();
    // 10 steps: the rate used at the last one (step index 9) is 0.01.
    assert_eq!(h.epochs[0].learning_rate, 0.01);
    // With clipvalue 1e-3 and SGD at rate 1, no weight moves by more than 1e-3 in a step.
    let mut m = Sequential::new(&[2]).seed(1);
    m.add(Dense::new(3).activation(Activation::Softmax)).unwrap();
    let clip = Clip { value: Some(1e-3), ..Default::default() };
    m.compile_with(CompileConfig::new(Sgd::new(1.0), Loss::SparseCategoricalCrossentropy, &[]).clip(clip)).unwrap();
    let before = m.get_weights();
    m.train_on_batch(&x.slice_rows(0, 30), &y.slice_rows(0, 30)).unwrap();
    for (a, b) in before.iter().flatten().zip(m.get_weights().iter().flatten()) {
        assert!((a - b).abs() <= 1e-3 + 1e-7);
    }
}

#[test]
fn adamw_and_adagrad_first_steps_follow_keras_formulas() {
    // One weight w = 1, loss = w (gradient 1): Adagrad: acc = 0.1 + 1; w = 1 − lr·1/√(1.1 + 1e-7).
    // AdamW: w = 1 − lr·wd·1, then Adam's first step moves it by lr·m̂/(√v̂ + ε) = lr·1/(1 + ε).
    for (opt, want) in [
        (OptimizerConfig::from(Adagrad::new(0.1)), 1.0 - 0.1 / (1.1f64 + 1e-7).sqrt()),
        (OptimizerConfig::from(AdamW::new(0.1, 0.5)), 1.0 - 0.1 * 0.5 - 0.1 / (1.0 + 1e-7)),
    ] {
        let mut g = kiln::core::Graph::<f32>::new();
        let p = g.add_param("w", &[1], vec![1.0], true).unwrap();
        let mut o = kiln::optim::Optimizer::new(opt);
        let (params, grads) = g.params_and_grads_mut();
        grads[p.0][0] = 1.0;
        o.step(params, grads);
        assert!((g.param(p).value[0] as f64 - want).abs() < 1e-6, "{} vs {want}", g.param(p).value[0]);
    }
}

use kiln::optim::OptimizerConfig;
