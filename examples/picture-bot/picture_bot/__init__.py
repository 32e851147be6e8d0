"""Picture Bot: this bot's own code (created once by the template, yours to edit)."""
