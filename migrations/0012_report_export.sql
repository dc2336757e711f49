-- Scheduled reports can also be written as files to a directory (`reports.directory`). A report stored
-- while that directory is configured waits here until its files are written; a failed write (a missing
-- or read-only volume) leaves it pending, and the next check of the report loop tries again.
alter table report add column export_pending boolean not null default false;

-- The report loop looks only at pending reports.
create index report_export_pending on report (id) where export_pending;
