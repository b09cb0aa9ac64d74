//! Monitoring: drift reference profiles, the statistics that compare a batch with them, the
//! drift report (tests, label-free accuracy estimate, what changed, emerging topics) with its
//! markdown/HTML/PNG rendering, and the Prometheus exposition. It knows nothing of models or
//! files of data: `models` builds the reference at train time, `pipeline` scores a batch into
//! observations, and the `drift-check` command writes what this module renders.

pub mod drift;
pub mod exposition;
pub mod profile;
pub mod report;
pub mod scan;
pub mod stats;
pub mod topics;
