//! The loss curve: one row per training step, with validation numbers on
//! the steps that evaluated. Written as `curve.csv`.

use std::fmt::Write;

use serde::{Deserialize, Serialize};

/// Its name in the output (the kind's report declares its columns).
pub const FILE: &str = "curve.csv";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CurveRow {
    /// Steps done (1 = after the first update).
    pub step: usize,
    pub lr: f64,
    pub train_loss: f64,
    pub val_loss: Option<f64>,
    pub val_accuracy: Option<f64>,
}

pub fn to_csv(rows: &[CurveRow]) -> String {
    let mut out = String::from("step,lr,train_loss,val_loss,val_accuracy\n");
    let opt = |v: Option<f64>| v.map(|v| format!("{v:.6}")).unwrap_or_default();
    for r in rows {
        let _ = writeln!(
            out,
            "{},{:.6e},{:.6},{},{}",
            r.step,
            r.lr,
            r.train_loss,
            opt(r.val_loss),
            opt(r.val_accuracy)
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_leaves_missing_validation_empty() {
        let rows = [CurveRow {
            step: 1,
            lr: 1e-3,
            train_loss: 2.0,
            val_loss: None,
            val_accuracy: None,
        }];
        assert_eq!(
            to_csv(&rows),
            "step,lr,train_loss,val_loss,val_accuracy\n1,1.000000e-3,2.000000,,\n"
        );
    }
}
