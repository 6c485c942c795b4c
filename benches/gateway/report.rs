//! Samples, the printed table and the JSON record of a run.

use std::fmt::Write as _;

/// One measured quantity of one case: every sample of it (one per repetition).
#[derive(Debug, Clone, serde::Serialize)]
pub struct Row {
    pub group: String,
    pub case: String,
    pub metric: String,
    pub unit: String,
    pub samples: Vec<f64>,
}

impl Row {
    pub fn median(&self) -> f64 {
        median(&self.samples)
    }
}

pub fn median(samples: &[f64]) -> f64 {
    let mut s = samples.to_vec();
    s.sort_by(f64::total_cmp);
    match s.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => s[n / 2],
        n => (s[n / 2 - 1] + s[n / 2]) / 2.0,
    }
}

/// The `q` quantile (0..=1) of `samples`, nearest rank.
pub fn quantile(samples: &mut [f64], q: f64) -> f64 {
    samples.sort_by(f64::total_cmp);
    if samples.is_empty() {
        return f64::NAN;
    }
    let rank = ((q * samples.len() as f64).ceil() as usize).clamp(1, samples.len());
    samples[rank - 1]
}

/// A target of the issue, checked against the medians of a run.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Verdict {
    pub target: String,
    pub measured: String,
    pub met: bool,
}

#[derive(Debug, Default, serde::Serialize)]
pub struct Report {
    pub rows: Vec<Row>,
    pub verdicts: Vec<Verdict>,
    pub notes: Vec<String>,
}

impl Report {
    pub fn add(&mut self, group: &str, case: &str, metric: &str, unit: &str, v: f64) {
        if let Some(r) = self
            .rows
            .iter_mut()
            .find(|r| r.group == group && r.case == case && r.metric == metric)
        {
            r.samples.push(v);
            return;
        }
        self.rows.push(Row {
            group: group.into(),
            case: case.into(),
            metric: metric.into(),
            unit: unit.into(),
            samples: vec![v],
        });
    }

    pub fn get(&self, group: &str, case: &str, metric: &str) -> Option<f64> {
        self.rows
            .iter()
            .find(|r| r.group == group && r.case == case && r.metric == metric)
            .map(Row::median)
    }

    pub fn note(&mut self, s: impl Into<String>) {
        let s = s.into();
        eprintln!("note: {s}");
        self.notes.push(s);
    }

    pub fn verdict(&mut self, target: &str, measured: String, met: bool) {
        self.verdicts.push(Verdict {
            target: target.into(),
            measured,
            met,
        });
    }

    /// The markdown tables: per group, one row per case and metric with the median
    /// and min–max of its samples; then the targets.
    pub fn markdown(&self) -> String {
        let mut out = String::new();
        let mut groups: Vec<&str> = Vec::new();
        for r in &self.rows {
            if !groups.contains(&r.group.as_str()) {
                groups.push(&r.group);
            }
        }
        for g in groups {
            let _ = writeln!(out, "\n### {g}\n");
            let _ = writeln!(out, "| case | metric | median | min–max | n |");
            let _ = writeln!(out, "|---|---|---:|---:|---:|");
            for r in self.rows.iter().filter(|r| r.group == g) {
                let min = r.samples.iter().copied().fold(f64::INFINITY, f64::min);
                let max = r.samples.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                let _ = writeln!(
                    out,
                    "| {} | {} ({}) | {} | {}–{} | {} |",
                    r.case,
                    r.metric,
                    r.unit,
                    fmt(r.median()),
                    fmt(min),
                    fmt(max),
                    r.samples.len()
                );
            }
        }
        if !self.verdicts.is_empty() {
            let _ = writeln!(out, "\n### targets\n");
            let _ = writeln!(out, "| target | measured (medians) | met |");
            let _ = writeln!(out, "|---|---|---|");
            for v in &self.verdicts {
                let _ = writeln!(
                    out,
                    "| {} | {} | {} |",
                    v.target,
                    v.measured,
                    if v.met { "yes" } else { "**no**" }
                );
            }
        }
        if !self.notes.is_empty() {
            let _ = writeln!(out, "\nNotes:\n");
            for n in &self.notes {
                let _ = writeln!(out, "- {n}");
            }
        }
        out
    }
}

/// Three significant figures, no exponent for the ranges we print.
pub fn fmt(v: f64) -> String {
    if !v.is_finite() {
        return "–".into();
    }
    let a = v.abs();
    if a >= 100.0 {
        format!("{v:.0}")
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else if a >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}
