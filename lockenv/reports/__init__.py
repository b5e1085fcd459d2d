"""What is made from a lock for people and other tools: tree, diff, export, bundle."""
