//! The reply playbook (`data/playbook.toml`, or `--playbook FILE`): per intent, reply templates,
//! suggested actions, the information needed to act and whether a human must always take over;
//! and the parts every draft shares (greeting, sign-off, repeat contact, open issues, the
//! question for missing information, the safe fallback). Templates are minijinja with strict
//! undefined: a template that touches a slot the query does not have fails, and the next one in
//! its list is tried. Everything is checked at load — syntax, slot names, that the last template
//! of each list renders with only the slots it always has — so a draft never fails at run time.
//! Renders text; knows nothing of models, history files or output.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use minijinja::{Environment, UndefinedBehavior, Value};
use serde::{Deserialize, Serialize};
use toml::Spanned;

use crate::error::{Error, Location, Result};

/// The playbook for the sample intents of `data/`, built in as the default.
pub const SAMPLE: &str = include_str!("../../data/playbook.toml");
/// How the built-in playbook is named in messages.
pub const SAMPLE_NAME: &str = "data/playbook.toml (built in)";

/// A value a template can use: where it comes from is reported in the draft's grounding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Slot {
    FirstName,
    Tier,
    CustomerId,
    Intent,
    IntentName,
    Order,
    CardLast4,
    Amount,
    Date,
    Invoice,
    Transfer,
    RepeatContacts,
    OpenIssues,
    LastContact,
    Missing,
}

impl Slot {
    pub const ALL: [Slot; 15] = [
        Slot::FirstName,
        Slot::Tier,
        Slot::CustomerId,
        Slot::Intent,
        Slot::IntentName,
        Slot::Order,
        Slot::CardLast4,
        Slot::Amount,
        Slot::Date,
        Slot::Invoice,
        Slot::Transfer,
        Slot::RepeatContacts,
        Slot::OpenIssues,
        Slot::LastContact,
        Slot::Missing,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Slot::FirstName => "first_name",
            Slot::Tier => "tier",
            Slot::CustomerId => "customer_id",
            Slot::Intent => "intent",
            Slot::IntentName => "intent_name",
            Slot::Order => "order",
            Slot::CardLast4 => "card_last4",
            Slot::Amount => "amount",
            Slot::Date => "date",
            Slot::Invoice => "invoice",
            Slot::Transfer => "transfer",
            Slot::RepeatContacts => "repeat_contacts",
            Slot::OpenIssues => "open_issues",
            Slot::LastContact => "last_contact",
            Slot::Missing => "missing",
        }
    }

    pub fn parse(s: &str) -> Option<Slot> {
        Slot::ALL.into_iter().find(|x| x.name() == s)
    }

    /// Slots a `requires` list may name: facts of the query or the customer, not ones cqr makes.
    fn can_be_required(self) -> bool {
        !matches!(
            self,
            Slot::Intent
                | Slot::IntentName
                | Slot::RepeatContacts
                | Slot::OpenIssues
                | Slot::LastContact
                | Slot::Missing
        )
    }
}

/// A slot's value: text, a count, or a list of texts.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum SlotValue {
    Text(String),
    Count(u32),
    List(Vec<String>),
}

impl SlotValue {
    /// The value as one line of text (for grounding and fact checks).
    pub fn display(&self) -> String {
        match self {
            SlotValue::Text(s) => s.clone(),
            SlotValue::Count(n) => n.to_string(),
            SlotValue::List(v) => v.join("; "),
        }
    }
}

/// The slots at hand for one draft.
pub type Slots = BTreeMap<Slot, SlotValue>;

/// Which list of templates: the shared parts and each intent's reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    Greeting,
    SignOff,
    RepeatContact,
    OpenIssues,
    Ask,
    Fallback,
    Reply,
}

impl Part {
    const COMMON: [Part; 6] = [
        Part::Greeting,
        Part::SignOff,
        Part::RepeatContact,
        Part::OpenIssues,
        Part::Ask,
        Part::Fallback,
    ];

    fn key(self) -> &'static str {
        match self {
            Part::Greeting => "greeting",
            Part::SignOff => "sign_off",
            Part::RepeatContact => "repeat_contact",
            Part::OpenIssues => "open_issues",
            Part::Ask => "ask",
            Part::Fallback => "fallback",
            Part::Reply => "reply",
        }
    }

    /// The slots this part always has when it is rendered (beyond `intent` and `intent_name`).
    fn always(self) -> &'static [Slot] {
        match self {
            Part::RepeatContact => &[Slot::RepeatContacts],
            Part::OpenIssues => &[Slot::OpenIssues],
            Part::Ask => &[Slot::Missing],
            _ => &[],
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PlaybookFile {
    common: CommonFile,
    #[serde(default)]
    intents: BTreeMap<String, IntentFile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CommonFile {
    greeting: Vec<Spanned<String>>,
    sign_off: Vec<Spanned<String>>,
    repeat_contact: Vec<Spanned<String>>,
    open_issues: Vec<Spanned<String>>,
    ask: Vec<Spanned<String>>,
    fallback: Vec<Spanned<String>>,
}

impl CommonFile {
    fn part(&self, p: Part) -> &[Spanned<String>] {
        match p {
            Part::Greeting => &self.greeting,
            Part::SignOff => &self.sign_off,
            Part::RepeatContact => &self.repeat_contact,
            Part::OpenIssues => &self.open_issues,
            Part::Ask => &self.ask,
            Part::Fallback | Part::Reply => &self.fallback,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct IntentFile {
    reply: Vec<Spanned<String>>,
    #[serde(default)]
    actions: Vec<String>,
    #[serde(default)]
    requires: Vec<String>,
    #[serde(default)]
    handoff: bool,
    #[serde(default)]
    ask_for: BTreeMap<String, String>,
}

/// One intent's entry, checked.
#[derive(Debug, Clone)]
pub struct Entry {
    reply: Vec<String>,
    pub actions: Vec<String>,
    /// Slots needed to act, each with the phrase that asks for it.
    pub requires: Vec<(Slot, String)>,
    /// This intent always goes to a human.
    pub handoff: bool,
}

/// A loaded, validated playbook.
pub struct Playbook {
    /// Where it came from, for messages.
    pub source: String,
    env: Environment<'static>,
    common: HashMap<&'static str, Vec<String>>,
    intents: BTreeMap<String, Entry>,
}

impl std::fmt::Debug for Playbook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Playbook")
            .field("source", &self.source)
            .field("intents", &self.intents.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// A rendered part: the text and which template of the list gave it.
#[derive(Debug, Clone, PartialEq)]
pub struct Rendered {
    pub text: String,
    /// `intents.refund_request.reply[1]`, `common.fallback[0]`, ...
    pub template: String,
}

impl Playbook {
    /// Reads and validates the playbook at `path`.
    pub fn load(path: &Path) -> Result<Playbook> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Playbook::parse(&path.display().to_string(), &text)
    }

    /// The built-in sample playbook.
    pub fn sample() -> Playbook {
        Playbook::parse(SAMPLE_NAME, SAMPLE).expect("the built-in playbook is checked by its tests")
    }

    /// Parses and validates playbook `text`; `source` names it in errors.
    pub fn parse(source: &str, text: &str) -> Result<Playbook> {
        let file: PlaybookFile = toml::from_str(text).map_err(|e| {
            let mut loc = Location::new(source);
            if let Some(span) = e.span() {
                let (line, col) = line_col(text, span.start);
                loc = loc.line(line).column(col);
            }
            Error::input(loc, format!("not a valid playbook: {}", e.message()))
        })?;
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        env.set_keep_trailing_newline(false);
        let mut b = Builder {
            source,
            text,
            env: &mut env,
        };
        let mut common = HashMap::new();
        for part in Part::COMMON {
            let names = b.templates("common", part, file.common.part(part))?;
            common.insert(part.key(), names);
        }
        let mut intents = BTreeMap::new();
        for (intent, f) in &file.intents {
            let entry = b.entry(intent, f)?;
            intents.insert(intent.clone(), entry);
        }
        Ok(Playbook {
            source: source.to_string(),
            env,
            common,
            intents,
        })
    }

    /// Checks the playbook against a model's intents: an intent the model does not know is an
    /// error; the model's intents the playbook lacks are returned (they get the fallback and a
    /// hand-off).
    pub fn check_intents(&self, labels: &[String]) -> Result<Vec<String>> {
        if let Some(unknown) = self.intents.keys().find(|i| !labels.contains(i)) {
            return Err(Error::input(
                Location::new(&self.source).field(format!("intents.{unknown}")),
                format!(
                    "the model does not know the intent `{unknown}` (its intents: {}); \
                     give the playbook for this model with --playbook FILE",
                    labels.join(", ")
                ),
            ));
        }
        Ok(labels
            .iter()
            .filter(|l| !self.intents.contains_key(*l))
            .cloned()
            .collect())
    }

    /// How many templates it holds.
    pub fn template_count(&self) -> usize {
        self.common.values().map(Vec::len).sum::<usize>()
            + self.intents.values().map(|e| e.reply.len()).sum::<usize>()
    }

    pub fn entry(&self, intent: &str) -> Option<&Entry> {
        self.intents.get(intent)
    }

    pub fn intents(&self) -> impl Iterator<Item = &str> {
        self.intents.keys().map(String::as_str)
    }

    /// Renders an intent's reply body: the first of its templates that the slots allow.
    pub fn reply(&self, intent: &str, slots: &Slots) -> Option<Rendered> {
        let e = self.intents.get(intent)?;
        self.first(&e.reply, slots)
    }

    /// Renders one of the shared parts.
    pub fn common(&self, part: Part, slots: &Slots) -> Option<Rendered> {
        self.first(&self.common[part.key()], slots)
    }

    /// The first template of `names` that renders with `slots`. The last always renders with
    /// the slots its part always has (checked at load), so `None` means a caller left those out.
    fn first(&self, names: &[String], slots: &Slots) -> Option<Rendered> {
        let ctx = context(slots);
        names.iter().find_map(|name| {
            let t = self.env.get_template(name).ok()?;
            let text = t.render(&ctx).ok()?;
            Some(Rendered {
                text: text.trim().to_string(),
                template: name.clone(),
            })
        })
    }
}

/// The template context: each slot under its name; slots not at hand are undefined.
fn context(slots: &Slots) -> Value {
    let map: BTreeMap<&str, &SlotValue> = slots.iter().map(|(k, v)| (k.name(), v)).collect();
    Value::from_serialize(&map)
}

/// Compiles and checks templates into the environment.
struct Builder<'a> {
    source: &'a str,
    text: &'a str,
    env: &'a mut Environment<'static>,
}

impl Builder<'_> {
    fn entry(&mut self, intent: &str, f: &IntentFile) -> Result<Entry> {
        let reply = self.templates(&format!("intents.{intent}"), Part::Reply, &f.reply)?;
        let source = self.source;
        let at = |what: &str| Location::new(source).field(format!("intents.{intent}.{what}"));
        for a in &f.actions {
            let ok = a.starts_with(|c: char| c.is_ascii_lowercase())
                && a.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
            if !ok {
                return Err(Error::input(
                    at("actions"),
                    format!("action `{a}` must be snake_case (a-z, 0-9, _)"),
                ));
            }
        }
        let mut requires = Vec::new();
        for r in &f.requires {
            let slot = Slot::parse(r)
                .filter(|s| s.can_be_required())
                .ok_or_else(|| {
                    Error::input(
                        at("requires"),
                        format!(
                            "unknown slot `{r}` (a required slot is one of: {})",
                            required_slot_names()
                        ),
                    )
                })?;
            let phrase = f.ask_for.get(r).ok_or_else(|| {
                Error::input(
                    at("ask_for"),
                    format!("slot `{r}` is required but has no phrase to ask for it"),
                )
            })?;
            requires.push((slot, phrase.clone()));
        }
        if let Some(extra) = f.ask_for.keys().find(|k| !f.requires.contains(k)) {
            return Err(Error::input(
                at("ask_for"),
                format!("slot `{extra}` is not in `requires`"),
            ));
        }
        Ok(Entry {
            reply,
            actions: f.actions.clone(),
            requires,
            handoff: f.handoff,
        })
    }

    /// Compiles one list of templates, checks every slot name, renders each with every slot
    /// and the last with only the slots its part always has. Returns their names.
    fn templates(
        &mut self,
        prefix: &str,
        part: Part,
        list: &[Spanned<String>],
    ) -> Result<Vec<String>> {
        let key = format!("{prefix}.{}", part.key());
        if list.is_empty() {
            return Err(Error::input(
                Location::new(self.source).field(&key),
                "needs at least one template",
            ));
        }
        let mut names = Vec::new();
        for (i, t) in list.iter().enumerate() {
            let name = format!("{key}[{i}]");
            let (line, _) = line_col(self.text, t.span().start);
            let at = |extra: u64| {
                Location::new(self.source)
                    .line(line + extra)
                    .field(name.clone())
            };
            self.env
                .add_template_owned(name.clone(), t.get_ref().clone())
                .map_err(|e| {
                    let extra = e.line().unwrap_or(1).saturating_sub(1) as u64;
                    Error::input(
                        at(extra),
                        format!("template syntax error: {}", describe(&e)),
                    )
                })?;
            let tmpl = self.env.get_template(&name).expect("just added");
            let mut used: Vec<String> = tmpl.undeclared_variables(false).into_iter().collect();
            used.sort();
            for v in &used {
                let slot = Slot::parse(v).ok_or_else(|| {
                    Error::input(
                        at(0),
                        format!("unknown slot `{v}` (slots: {})", all_slot_names()),
                    )
                })?;
                if slot == Slot::Missing && part != Part::Ask {
                    return Err(Error::input(
                        at(0),
                        "slot `missing` is only given to common.ask",
                    ));
                }
            }
            tmpl.render(context(&example_slots(part, true)))
                .map_err(|e| Error::input(at(0), format!("does not render: {}", describe(&e))))?;
            names.push(name);
        }
        let last = names.last().expect("not empty");
        let tmpl = self.env.get_template(last).expect("just added");
        if let Err(e) = tmpl.render(context(&example_slots(part, false))) {
            let always: Vec<&str> = [Slot::Intent, Slot::IntentName]
                .iter()
                .chain(part.always())
                .map(|s| s.name())
                .collect();
            let mut others: Vec<String> = tmpl
                .undeclared_variables(false)
                .into_iter()
                .filter(|v| !always.contains(&v.as_str()))
                .collect();
            others.sort();
            let (line, _) = line_col(self.text, list[list.len() - 1].span().start);
            return Err(Error::input(
                Location::new(self.source).line(line).field(last.clone()),
                format!(
                    "the last template of `{key}` must render with only the slots it always has \
                     ({}), but it uses {}; guard them with `{{% if SLOT is defined %}}` ({})",
                    always.join(", "),
                    others.join(", "),
                    describe(&e)
                ),
            ));
        }
        Ok(names)
    }
}

/// Example slots for checking templates: all of them (`full`), or only the ones `part` always
/// has.
fn example_slots(part: Part, full: bool) -> Slots {
    let mut s = Slots::new();
    s.insert(Slot::Intent, SlotValue::Text("refund_request".into()));
    s.insert(Slot::IntentName, SlotValue::Text("refund request".into()));
    for &a in part.always() {
        s.insert(a, example_value(a));
    }
    if full {
        for slot in Slot::ALL {
            if slot != Slot::Missing || part == Part::Ask {
                s.entry(slot).or_insert_with(|| example_value(slot));
            }
        }
    }
    s
}

fn example_value(slot: Slot) -> SlotValue {
    let t = |s: &str| SlotValue::Text(s.into());
    match slot {
        Slot::FirstName => t("Ada"),
        Slot::Tier => t("premium"),
        Slot::CustomerId => t("C0001"),
        Slot::Intent => t("refund_request"),
        Slot::IntentName => t("refund request"),
        Slot::Order => t("#A12345"),
        Slot::CardLast4 => t("4242"),
        Slot::Amount => t("$10.00"),
        Slot::Date => t("March 3rd"),
        Slot::Invoice => t("INV-2026001"),
        Slot::Transfer => t("TRF12345"),
        Slot::RepeatContacts => SlotValue::Count(1),
        Slot::OpenIssues => SlotValue::List(vec!["billing question opened 2026-09-03".into()]),
        Slot::LastContact => t("2026-09-03"),
        Slot::Missing => t("your order number"),
    }
}

fn all_slot_names() -> String {
    Slot::ALL.map(Slot::name).join(", ")
}

fn required_slot_names() -> String {
    Slot::ALL
        .into_iter()
        .filter(|s| s.can_be_required())
        .map(Slot::name)
        .collect::<Vec<_>>()
        .join(", ")
}

/// A minijinja error without its template-name prefix, with its detail.
fn describe(e: &minijinja::Error) -> String {
    match e.detail() {
        Some(d) => format!("{} ({d})", e.kind()),
        None => e.kind().to_string(),
    }
}

/// 1-based line and column of byte `offset` in `text`.
fn line_col(text: &str, offset: usize) -> (u64, u64) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() as u64 + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) as u64 + 1;
    (line, col)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINI: &str = r#"
[common]
greeting = ["Hi {{ first_name }},", "Hello,"]
sign_off = ["Kind regards"]
repeat_contact = ["Sorry you had to write again."]
open_issues = ["We also have {{ open_issues | length }} open."]
ask = ["Could you send us {{ missing }}?"]
fallback = ["Thanks, a colleague will reply."]

[intents.refund_request]
reply = ["Refund for {{ order }}.", "We will look at your refund."]
actions = ["open_refund_case"]
requires = ["order"]
[intents.refund_request.ask_for]
order = "your order number"
"#;

    fn slots(pairs: &[(Slot, &str)]) -> Slots {
        let mut s = example_slots(Part::Reply, false);
        for (k, v) in pairs {
            s.insert(*k, SlotValue::Text(v.to_string()));
        }
        s
    }

    #[test]
    fn the_first_template_the_slots_allow_is_used() {
        let p = Playbook::parse("t.toml", MINI).unwrap();
        let r = p
            .reply("refund_request", &slots(&[(Slot::Order, "#A1")]))
            .unwrap();
        assert_eq!(r.text, "Refund for #A1.");
        assert_eq!(r.template, "intents.refund_request.reply[0]");
        let r = p.reply("refund_request", &slots(&[])).unwrap();
        assert_eq!(r.text, "We will look at your refund.");
        let g = p.common(Part::Greeting, &slots(&[])).unwrap();
        assert_eq!(g.text, "Hello,");
        assert_eq!(p.reply("unknown_intent", &slots(&[])), None);
        assert_eq!(
            p.entry("refund_request").unwrap().requires[0].0,
            Slot::Order
        );
    }

    fn error_of(text: &str) -> String {
        Playbook::parse("pb.toml", text).unwrap_err().to_string()
    }

    #[test]
    fn each_kind_of_mistake_names_file_intent_and_slot_or_line() {
        let e = error_of(&MINI.replace("Refund for {{ order }}.", "Refund {{ ordr }}."));
        assert!(
            e.contains("pb.toml") && e.contains("intents.refund_request.reply[0]"),
            "{e}"
        );
        assert!(e.contains("unknown slot `ordr`"), "{e}");
        let e = error_of(&MINI.replace("Refund for {{ order }}.", "Refund {% if order %}."));
        assert!(
            e.contains("template syntax error") && e.contains("line 11"),
            "{e}"
        );
        let e = error_of(&MINI.replace(
            "\"We will look at your refund.\"",
            "\"Your {{ amount }} refund.\"",
        ));
        assert!(e.contains("last template") && e.contains("amount"), "{e}");
        let e = error_of(&MINI.replace("requires = [\"order\"]", "requires = [\"ordr\"]"));
        assert!(
            e.contains("intents.refund_request.requires") && e.contains("`ordr`"),
            "{e}"
        );
        let e = error_of(&MINI.replace("order = \"your order number\"", ""));
        assert!(e.contains("no phrase to ask"), "{e}");
        let e = error_of(&MINI.replace("open_refund_case", "Open Refund"));
        assert!(e.contains("snake_case"), "{e}");
        let e = error_of(&MINI.replace("fallback = ", "fallbak = "));
        assert!(e.contains("pb.toml: line") && e.contains("fallbak"), "{e}");
        let e = error_of(&MINI.replace("Kind regards", "{{ missing }}"));
        assert!(e.contains("only given to common.ask"), "{e}");
    }

    #[test]
    fn intents_are_checked_against_the_model() {
        let p = Playbook::parse("t.toml", MINI).unwrap();
        let labels = ["refund_request".to_string(), "order_status".to_string()];
        assert_eq!(p.check_intents(&labels).unwrap(), ["order_status"]);
        let e = p
            .check_intents(&["order_status".to_string()])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("t.toml") && e.contains("`refund_request`"),
            "{e}"
        );
    }

    #[test]
    fn the_sample_playbook_is_valid() {
        let p = Playbook::sample();
        assert_eq!(p.intents().count(), 16);
    }
}
