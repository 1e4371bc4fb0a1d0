//! What a table model predicts: each target column and its task (two classes, several, or a number),
//! inferred from the training rows, and the targets' values as the losses want them. A model has one output
//! per target (`data.target` a list gives several).

use super::table::{ColumnType, Table};
use kiln_core::{Error, Result, Tensor};
use serde::{Deserialize, Serialize};

/// What is predicted: one of two classes (a sigmoid output), one of several, or a number.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Task {
    /// classes[1] is the positive class (output 1).
    Binary {
        classes: Vec<String>,
    },
    Multiclass {
        classes: Vec<String>,
    },
    Regression,
}

impl Task {
    /// Output units: 1 for binary (a sigmoid) and regression, the class count otherwise.
    pub fn units(&self) -> usize {
        match self {
            Task::Multiclass { classes } => classes.len(),
            _ => 1,
        }
    }
}

/// One column the model predicts, and what it is: the model has one output per target.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Target {
    pub name: String,
    pub task: Task,
}

impl Target {
    /// The target column `target` over `rows`: two values are two classes (a number too), more categories
    /// are classes, more numbers a number to predict.
    pub(crate) fn fit(table: &Table, types: &[ColumnType], target: &str, rows: &[usize]) -> Result<Target> {
        let t_idx =
            table.columns.iter().position(|c| c.name == target).ok_or_else(|| table.column(target).err().unwrap())?;
        let tcol = &table.columns[t_idx];
        let missing = rows.iter().filter(|&&r| tcol.cells[r].is_none()).count();
        if missing == rows.len() && !rows.is_empty() {
            return Err(Error::Data(format!(
                "{}: target `{target}` is empty on every one of the {} training rows: is it the column to predict?",
                table.source,
                rows.len()
            )));
        }
        if let Some(r) = rows.iter().find(|&&r| tcol.cells[r].is_none()) {
            return Err(Error::Data(format!(
                "{}: target `{target}` is missing on row {} ({missing} of the {} training rows lack it; drop them \
                 or fill them in)",
                table.source,
                r + 1,
                rows.len()
            )));
        }
        let one_class = |n: usize| {
            Error::Data(format!(
                "{}: target `{target}` has {n} distinct value{} in the {} training rows; there is nothing to learn",
                table.source,
                if n == 1 { "" } else { "s" },
                rows.len()
            ))
        };
        let task = match types[t_idx] {
            ColumnType::Number => {
                let mut v: Vec<&str> = rows.iter().filter_map(|&r| tcol.cells[r].as_deref()).collect();
                v.sort_unstable();
                v.dedup();
                match v.len() {
                    0 | 1 => return Err(one_class(v.len())),
                    2 => Task::Binary { classes: v.iter().map(|s| s.to_string()).collect() },
                    _ => Task::Regression,
                }
            }
            ColumnType::Text => {
                return Err(Error::Config(format!(
                    "target `{target}` looks like free text ({} distinct values); declare it a category to classify",
                    tcol.distinct()
                )));
            }
            _ => {
                let mut v: Vec<String> = rows.iter().filter_map(|&r| tcol.cells[r].clone()).collect();
                v.sort_unstable();
                v.dedup();
                match v.len() {
                    0 | 1 => return Err(one_class(v.len())),
                    2 => Task::Binary { classes: v },
                    _ => Task::Multiclass { classes: v },
                }
            }
        };
        Ok(Target { name: target.to_string(), task })
    }

    /// The targets of `rows`: 0/1 for binary, class indices for multiclass, numbers for regression. A class
    /// training never saw is an error naming it.
    pub fn values(&self, table: &Table, rows: &[usize]) -> Result<Tensor> {
        let col = table.column(&self.name)?;
        let mut y = Vec::with_capacity(rows.len());
        for &r in rows {
            let Some(v) = col.cells[r].as_deref() else {
                return Err(Error::Data(format!(
                    "{}: target `{}` is missing on row {}",
                    table.source,
                    self.name,
                    r + 1
                )));
            };
            y.push(match &self.task {
                Task::Regression => v.parse::<f64>().map_err(|_| {
                    Error::Data(format!(
                        "{}: target `{}` row {} has `{v}`, not a number",
                        table.source,
                        self.name,
                        r + 1
                    ))
                })? as f32,
                Task::Binary { classes } | Task::Multiclass { classes } => {
                    classes.iter().position(|c| c == v).ok_or_else(|| {
                        Error::Data(format!(
                            "{}: row {} has class `{v}` in `{}`, which training never saw (classes: {})",
                            table.source,
                            r + 1,
                            self.name,
                            classes.join(", ")
                        ))
                    })? as f32
                }
            });
        }
        Tensor::new(&[rows.len()], y)
    }
}
