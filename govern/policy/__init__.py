"""Policy: the Casbin ABAC model, its row-filter compiler and the row-filter AST."""
