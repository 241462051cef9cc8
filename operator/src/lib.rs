//! The weft operator: reads an Installation, validates it, renders the objects the pod network needs
//! (pure), applies them with server-side apply and reports status conditions.

pub mod validate;
