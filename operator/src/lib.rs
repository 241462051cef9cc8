//! The weft operator: reads an Installation, validates it, renders the objects the pod network needs
//! (pure), applies them with server-side apply and reports status conditions.

pub mod apply;
pub mod conditions;
pub mod counting;
pub mod drift;
pub mod health;
pub mod labels;
pub mod leader;
pub mod metrics;
pub mod render;
pub mod validate;
