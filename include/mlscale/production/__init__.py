"""Production Engineer: promotion gates and decisions, batch scoring, monitoring and retrain requests, realised
outcomes, CI gates for a change."""
