-- Demo warehouse for dpgate: a synthetic company with an HR table (one row per
-- person), an audit log (many rows per person) and a public dimension table.
-- Run with psql -v events=N (number of audit-log rows; employees = N/10, at
-- least 1,000). Deterministic: setseed() fixes every draw, so two demos with
-- the same N hold the same data. Nothing here is real personal data.
\set ON_ERROR_STOP on
\if :{?events}
\else
  \set events 100000
\endif

SET client_min_messages = warning;
BEGIN;
SELECT setseed(0.20261123) \g /dev/null

DROP TABLE IF EXISTS public.events, public.employees, public.departments CASCADE;

-- Public dimension: safe to release as is.
CREATE TABLE public.departments (
  department_id integer PRIMARY KEY,
  name          text NOT NULL,
  region        text NOT NULL
);
INSERT INTO public.departments VALUES
  (1, 'engineering', 'north'), (2, 'sales', 'south'), (3, 'support', 'east'),
  (4, 'finance', 'west'), (5, 'marketing', 'north'), (6, 'legal', 'south'),
  (7, 'operations', 'east'), (8, 'research', 'west'), (9, 'hr', 'north'),
  (10, 'security', 'east'), (11, 'design', 'west'), (12, 'data', 'south');

-- Private, one row per unit (employee_id).
CREATE TABLE public.employees (
  employee_id   integer PRIMARY KEY,
  region        text NOT NULL,
  department_id integer NOT NULL REFERENCES public.departments,
  age           integer NOT NULL,
  salary        numeric(12, 2) NOT NULL,
  hire_date     date NOT NULL,
  remote        boolean NOT NULL
);

INSERT INTO public.employees
SELECT g,
       -- skewed regions: north is the biggest office
       (ARRAY['north', 'north', 'north', 'south', 'south', 'east', 'west'])[1 + floor(random() * 7)::int],
       1 + floor(random() * 12)::int,
       -- ages 18..69, roughly normal around 43 (sum of uniforms)
       least(70, greatest(18, round(18 + (random() + random() + random()) * 17)))::int,
       -- log-normal-ish salaries, a few far above the configured upper bound
       round((28000 * exp((random() + random() + random() - 1.5) * 1.3) * 2.2)::numeric, 2),
       date '2005-01-01' + floor(random() * 7600)::int,
       random() < 0.35
FROM generate_series(1, greatest(1000, (:events / 10)::int)) AS g;

-- Private, many rows per unit (user_id): an audit log. Activity is heavy-tailed:
-- a few users produce a large share of events, which is exactly why dpgate bounds
-- each user's contribution.
CREATE TABLE public.events (
  event_id   bigint PRIMARY KEY,
  user_id    integer NOT NULL,
  ts         timestamptz NOT NULL,
  action     text NOT NULL,
  resource   text NOT NULL,
  bytes      bigint NOT NULL,
  latency_ms double precision NOT NULL
);

INSERT INTO public.events
SELECT g,
       1 + floor(power(random(), 3) * n.employees)::int,
       timestamptz '2026-08-01 00:00:00+00' + random() * interval '90 days',
       (ARRAY['login', 'login', 'login', 'view', 'view', 'view', 'view', 'download', 'upload',
              'share', 'delete'])[1 + floor(random() * 11)::int],
       '/' || (ARRAY['docs', 'reports', 'payroll', 'wiki', 'code', 'tickets'])[1 + floor(random() * 6)::int]
           || '/' || (1 + floor(random() * 500)::int)::text,
       floor(exp(random() * 14))::bigint,
       round((5 + 300 * power(random(), 4))::numeric, 3)::double precision
FROM generate_series(1, :events) AS g,
     (SELECT count(*) AS employees FROM public.employees) AS n;

CREATE INDEX events_user_id ON public.events (user_id);
CREATE INDEX events_ts ON public.events (ts);
COMMIT;

ANALYZE public.departments;
ANALYZE public.employees;
ANALYZE public.events;
