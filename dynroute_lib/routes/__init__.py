"""Routes through the routing space (paper Sec. 3.1, Fig. 2-3): topology, node keys and route masks.

``routes.space`` (layers, scales, paths, node keys) and ``routes.masks`` (``RouteMask``, liveness) are pure
Python and re-exported here; ``routes.modeled`` (the classic architectures of Table 1 as routes),
``routes.common`` (Common-A/B/C from gate records) and ``routes.random_masks`` (random routes at a FLOPs keep
rate, priced with ``model.costs``) are imported by name.
"""
from .masks import RouteMask, liveness
from .space import (NUM_SCALES, PATH_NAMES, all_nodes, incoming, is_node_key, layer_scales, node_key, node_paths,
                    parse_node_key)

__all__ = ["NUM_SCALES", "PATH_NAMES", "RouteMask", "all_nodes", "incoming", "is_node_key", "layer_scales",
           "liveness", "node_key", "node_paths", "parse_node_key"]
