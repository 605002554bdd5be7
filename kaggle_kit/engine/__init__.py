"""The training engine shared by the torch families: mmengine's Runner, set up once."""
