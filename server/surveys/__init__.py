"""Alliance ratings: instruments as data, survey links and forms, scoring,
stored ratings, FHIR export and the ratings API (docs/surveys.md)."""
