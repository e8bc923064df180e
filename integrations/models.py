# Connections, participant links, sync runs and quarantined records arrive with the
# integrations issue (shared/design.md, "Data model").
