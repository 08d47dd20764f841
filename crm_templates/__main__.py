"""``python -m crm_templates`` runs the command line."""

from .cli import main

main(prog_name="crm-templates")
