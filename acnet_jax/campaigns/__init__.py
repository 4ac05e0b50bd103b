"""Campaigns: a plan of training runs (`plan`), run one after another and
resumed where they stopped (`runner`), and their finished runs collected into
evidence files, a results table and curves (`results`)."""
