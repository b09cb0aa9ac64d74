//! `respond`'s pipeline: the [`QueryScorer`] decides each record exactly as `classify` does,
//! the [`Responder`] drafts the reply from that decision, and an optional LLM rewrites the drafts
//! of a batch (a bounded number at a time), each rewrite checked before it replaces the draft.
//! The customer's history feeds repeat contacts to priority and a missing tier to the record.

use serde_json::Value;

use super::record::RespondResult;
use super::{QueryScorer, Scored};
use crate::error::Result;
use crate::io::read::Record;
use crate::respond::llm::LlmClient;
use crate::respond::{PriorityFacts, QueryFacts, Responder};

/// One answered record: the output, its audit line and its priority breakdown.
#[derive(Debug, Clone)]
pub struct Responded {
    pub result: RespondResult,
    pub audit: Option<super::AuditEntry>,
    pub explain: Option<String>,
}

/// Scores and drafts batches of records.
pub struct QueryResponder {
    scorer: QueryScorer,
    responder: Responder,
    llm: Option<LlmClient>,
    tier_col: String,
}

impl QueryResponder {
    /// `scorer` must keep its records' context ([`super::ScoreOptions::context`]).
    pub fn new(
        mut scorer: QueryScorer,
        responder: Responder,
        llm: Option<LlmClient>,
    ) -> QueryResponder {
        if let Some(h) = &responder.history {
            for c in &h.contacts {
                scorer.add_contact(&c.customer, c.at);
            }
        }
        let tier_col = scorer.opts.columns.tier.clone();
        QueryResponder {
            scorer,
            responder,
            llm,
            tier_col,
        }
    }

    pub fn scorer(&self) -> &QueryScorer {
        &self.scorer
    }

    /// Answers one batch, in input order.
    pub fn respond(&mut self, mut batch: Vec<Record>) -> Result<Vec<Responded>> {
        let filled = self.fill_tiers(&mut batch);
        let mut scored = self.scorer.score(batch)?;
        // A tier taken from the history is the history's in the draft's grounding.
        for (s, filled) in scored.iter_mut().zip(filled) {
            if let (true, Some(c)) = (filled, s.context.as_mut()) {
                c.tier = None;
            }
        }
        self.embed_missing(&mut scored)?;
        let responder = &self.responder;
        let mut drafts = super::map(scored.iter().collect(), |s: &Scored| {
            facts(s).map(|q| responder.draft(&q))
        });
        let mut llm = vec![None; scored.len()];
        if let Some(client) = &self.llm {
            // The safe acknowledgement of a query cqr did not understand is not rewritten.
            let (idx, jobs): (Vec<usize>, Vec<_>) = scored
                .iter()
                .zip(&drafts)
                .enumerate()
                .filter_map(|(i, (s, d))| {
                    let q = facts(s).filter(|q| q.intent.is_some())?;
                    Some((i, responder.llm_job(&q, d.as_ref()?)))
                })
                .unzip();
            for (i, (rewrite, outcome)) in idx.into_iter().zip(client.rewrite_all(&jobs)) {
                if let (Some(r), Some(d)) = (rewrite, drafts[i].as_mut()) {
                    d.reply = r.reply;
                    // An answer that names no action leaves the playbook's.
                    if !r.suggested_actions.is_empty() {
                        d.suggested_actions = r.suggested_actions;
                    }
                }
                llm[i] = Some(outcome);
            }
        }
        Ok(scored
            .into_iter()
            .zip(drafts)
            .zip(llm)
            .map(|((s, draft), llm)| {
                let audit = s.audit.map(|mut a| {
                    a.reply = draft.as_ref().map(|d| d.reply.clone());
                    a.handoff = draft.as_ref().map(|d| d.handoff.required);
                    a
                });
                Responded {
                    result: RespondResult {
                        query: s.result,
                        draft,
                        llm,
                    },
                    audit,
                    explain: s.explain,
                }
            })
            .collect())
    }

    /// A record without a tier takes the one its customer has in the history; which ones did.
    fn fill_tiers(&self, batch: &mut [Record]) -> Vec<bool> {
        let customer_col = &self.scorer.opts.columns.customer;
        let mut filled = vec![false; batch.len()];
        for (r, filled) in batch.iter_mut().zip(filled.iter_mut()) {
            let has = |k: &str| {
                r.keep
                    .iter()
                    .any(|(n, v)| n == k && v.as_str().is_some_and(|s| !s.trim().is_empty()))
            };
            if has(&self.tier_col) {
                continue;
            }
            let customer = r
                .keep
                .iter()
                .find(|(n, _)| n == customer_col)
                .and_then(|(_, v)| v.as_str());
            if let Some(t) = customer.and_then(|c| self.responder.tier_of(c)) {
                let t = Value::from(t);
                r.keep.retain(|(n, _)| n != &self.tier_col);
                r.keep.push((self.tier_col.clone(), t));
                *filled = true;
            }
        }
        filled
    }

    /// Embedding retrieval needs each query's embedding; answers that came without one (the
    /// cascade's linear ones) are embedded here.
    fn embed_missing(&self, scored: &mut [Scored]) -> Result<()> {
        let wants = self
            .responder
            .index
            .as_ref()
            .is_some_and(|i| i.method == crate::respond::retrieve::Retrieval::Embedding);
        let Some(model) = self.scorer.model().filter(|_| wants) else {
            return Ok(());
        };
        let (idx, texts): (Vec<usize>, Vec<String>) = scored
            .iter()
            .enumerate()
            .filter_map(|(i, s)| {
                let c = s.context.as_ref()?;
                c.embedding.is_none().then(|| (i, c.masked.clone()))
            })
            .unzip();
        if texts.is_empty() {
            return Ok(());
        }
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        if let (Some(e), Some(dim)) = (
            model.embed_cached(&refs, &mut |_| {})?,
            model.embedding_dim(),
        ) {
            for (&i, row) in idx.iter().zip(e.chunks(dim)) {
                if let Some(c) = scored[i].context.as_mut() {
                    c.embedding = Some(row.to_vec());
                }
            }
        }
        Ok(())
    }
}

/// What the drafter needs of a scored record; `None` for a skipped one.
fn facts(s: &Scored) -> Option<QueryFacts<'_>> {
    let c = s.context.as_ref()?;
    let intent = s.result.intent.as_ref()?;
    Some(QueryFacts {
        id: match &s.result.id {
            crate::io::read::RecordId::Text(t) => t.as_str(),
            _ => "",
        },
        text: &c.masked,
        customer: c.customer.as_deref(),
        at: c.at,
        tier: c.tier.as_deref(),
        intent: (!intent.abstained).then_some(intent.intent.as_str()),
        confidence: intent.confidence as f32,
        priority: s.result.priority.as_ref().map(|p| PriorityFacts {
            level: p.level,
            escalate: p.escalate,
            reasons: p.reasons.iter().map(|r| r.detail.clone()).collect(),
        }),
        embedding: c.embedding.as_deref(),
    })
}
