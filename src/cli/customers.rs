//! `cqr customers HISTORY [--customer ID]`: per-customer summaries of a history file — contacts,
//! intent mix, sentiment trend, escalations, open issues, repeat contacts, last contact — as a
//! table or JSON; without `--customer`, the customers who came back most often first.

use clap::Args;
use serde::Serialize;

use super::{InputArgs, Outcome};
use crate::analysis::priority::PriorityEngine;
use crate::analysis::ContextColumns;
use crate::error::Error;
use crate::io::{Format, Target};
use crate::respond::analytics::{self, CustomerSummary};
use crate::respond::history::History;
use crate::settings::FileConfig;
use crate::ui;

#[derive(Debug, Args)]
pub struct CustomersArgs {
    /// The customer history (CSV, JSONL or Parquet with customer_id, created_at, text, intent,
    /// status; optional name, customer_tier, reply).
    pub history: String,
    /// Summarise this customer only.
    #[arg(long, value_name = "ID")]
    pub customer: Option<String>,
    /// How many customers to list, most repeat contacts first (0 = all).
    #[arg(long, default_value_t = 20, value_name = "N")]
    pub top: usize,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Input format (default: from the extension).
    #[arg(long, value_enum)]
    pub format: Option<Format>,
    /// Column with the customer id.
    #[arg(long, default_value = "customer_id", value_name = "NAME")]
    pub customer_col: String,
    /// Column with the contact's time (RFC 3339).
    #[arg(long, default_value = "created_at", value_name = "NAME")]
    pub time_col: String,
    /// Column with the customer tier.
    #[arg(long, default_value = "customer_tier", value_name = "NAME")]
    pub tier_col: String,
    #[command(flatten)]
    pub input: InputArgs,
}

/// The JSON printed without `--customer`.
#[derive(Serialize)]
struct Report<'a> {
    source: &'a str,
    customers: usize,
    contacts: usize,
    /// The customers listed, most repeat contacts first.
    top: &'a [CustomerSummary],
}

pub fn run(args: CustomersArgs, config: &FileConfig) -> anyhow::Result<Outcome> {
    if args.history == "-" {
        return Err(Error::Usage("customers reads a history file, not stdin".into()).into());
    }
    let mut spec = args.input.spec(&args.history, args.format, false);
    spec.target = Target::parse(&args.history);
    let cols = ContextColumns {
        customer: args.customer_col.clone(),
        time: args.time_col.clone(),
        tier: args.tier_col.clone(),
    };
    let h = History::load(spec, &cols)?;
    let window = PriorityEngine::new(config.priority.clone())
        .map_err(|e| Error::Usage(format!("[priority] in the config: {e}")))?
        .repeat_window_secs();
    if let Some(id) = &args.customer {
        let s = analytics::summarize(&h, id, window)
            .ok_or_else(|| Error::Usage(format!("{}: no contacts of customer `{id}`", h.source)))?;
        let text = if args.json {
            serde_json::to_string_pretty(&s)?
        } else {
            detail(&s)
        };
        ui::print(&text)?;
        return Ok(Outcome::Success);
    }
    let all = analytics::summarize_all(&h, window);
    let shown = if args.top == 0 {
        &all[..]
    } else {
        &all[..args.top.min(all.len())]
    };
    let text = if args.json {
        serde_json::to_string_pretty(&Report {
            source: &h.source,
            customers: all.len(),
            contacts: h.contacts.len(),
            top: shown,
        })?
    } else {
        table(&h, all.len(), shown)
    };
    ui::print(&text)?;
    Ok(Outcome::Success)
}

fn table(h: &History, customers: usize, rows: &[CustomerSummary]) -> String {
    let mut out = format!(
        "{}: {} contacts from {customers} customers; most repeat contacts first\n\n",
        h.source,
        h.contacts.len()
    );
    out.push_str(&format!(
        "{:<12} {:<9} {:>8} {:>7} {:>5} {:>9} {:<10} {:<26} {}\n",
        "customer",
        "tier",
        "contacts",
        "repeats",
        "open",
        "escalated",
        "sentiment",
        "top intent",
        "last"
    ));
    for s in rows {
        let top = s
            .intents
            .first()
            .map(|i| format!("{} ({})", i.intent, i.count))
            .unwrap_or_default();
        out.push_str(&format!(
            "{:<12} {:<9} {:>8} {:>7} {:>5} {:>9} {:<10} {:<26} {}\n",
            s.customer_id,
            s.tier.as_deref().unwrap_or("-"),
            s.contacts,
            s.repeat_contacts,
            s.open_issues.len(),
            s.escalations,
            s.sentiment.trend,
            top,
            s.last_contact
        ));
    }
    out
}

fn detail(s: &CustomerSummary) -> String {
    let mut out = format!("customer {}", s.customer_id);
    if let Some(n) = &s.name {
        out.push_str(&format!(" ({n})"));
    }
    out.push('\n');
    let line = |k: &str, v: String| format!("  {k:<16}{v}\n");
    out.push_str(&line("tier", s.tier.clone().unwrap_or_else(|| "-".into())));
    out.push_str(&line(
        "contacts",
        format!("{} ({} to {})", s.contacts, s.first_contact, s.last_contact),
    ));
    out.push_str(&line("repeat contacts", s.repeat_contacts.to_string()));
    out.push_str(&line("escalations", s.escalations.to_string()));
    let mix: Vec<String> = s
        .intents
        .iter()
        .map(|i| format!("{} {}", i.intent, i.count))
        .collect();
    out.push_str(&line("intents", mix.join(", ")));
    let change = s
        .sentiment
        .change
        .map(|c| format!(", change {c:+.3}"))
        .unwrap_or_default();
    out.push_str(&line(
        "sentiment",
        format!(
            "{} (mean {:+.3}{change})",
            s.sentiment.trend, s.sentiment.mean
        ),
    ));
    if s.open_issues.is_empty() {
        out.push_str(&line("open issues", "none".into()));
    } else {
        for (k, o) in s.open_issues.iter().enumerate() {
            let key = if k == 0 { "open issues" } else { "" };
            out.push_str(&line(
                key,
                format!("{} {} ({}, opened {})", o.id, o.intent, o.status, o.opened),
            ));
        }
    }
    out
}
