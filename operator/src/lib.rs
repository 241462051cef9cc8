//! The weft operator: reads an Installation, validates it, renders the objects the pod network needs
//! (pure), applies them with server-side apply and reports status conditions.

pub mod apply;
pub mod backoff;
pub mod children;
pub mod conditions;
pub mod context;
pub mod counting;
pub mod diagnose;
pub mod drift;
pub mod error;
pub mod events;
pub mod facts;
pub mod health;
pub mod ippools;
pub mod labels;
pub mod leader;
pub mod manifests;
pub mod metrics;
pub mod node_mtu;
pub mod prepare;
pub mod progress;
pub mod reconcile;
pub mod render;
pub mod runtime;
pub mod status;
pub mod steady;
pub mod validate;

/// Objects per page when listing kinds that grow with the cluster (nodes, pods): what one
/// response costs in memory stays the same at any cluster size.
pub const LIST_PAGE: u32 = 100;

/// Lists what `params` selects [`LIST_PAGE`] objects at a time, handing each page to `visit`,
/// so no more than one page is held at once.
pub async fn for_each_page<K>(
    api: &kube::Api<K>,
    params: kube::api::ListParams,
    mut visit: impl FnMut(Vec<K>),
) -> Result<(), kube::Error>
where
    K: Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let mut params = params.limit(LIST_PAGE);
    loop {
        let page = api.list(&params).await?;
        visit(page.items);
        match page.metadata.continue_.filter(|token| !token.is_empty()) {
            Some(token) => params = params.continue_token(&token),
            None => return Ok(()),
        }
    }
}
