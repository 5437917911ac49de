"""Lead-pipeline workflows PT1-PT5: domain code run by the orchestrator."""
