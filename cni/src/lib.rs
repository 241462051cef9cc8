//! weft's CNI plugins: `weft` (pod interfaces) and `weft-ipam` (host-local and pool-block IPAM).
