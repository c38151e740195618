"""Business Analyst: the KPI marts' build and the business report."""
