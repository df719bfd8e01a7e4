"""The iii engine: protocol codec, config, connections, routing, modules."""
