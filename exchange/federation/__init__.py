"""Sites and federation: identity, known sites, shared topics, MirrorMaker supervision."""
