-- Assessment results older than `retention.results_days` are deleted, except the newest of each series,
-- threshold or container and resource; these indexes find them (and serve "this run's rows" reads).
create index forecast_time on forecast (computed_at);
create index exhaustion_time on exhaustion (computed_at);
create index recommendation_time on recommendation (computed_at);
