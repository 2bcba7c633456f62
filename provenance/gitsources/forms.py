from __future__ import annotations

from django import forms

from provenance.gitsources.models import GitSource


class GitSourceForm(forms.ModelForm):
    class Meta:
        model = GitSource
        fields = ["name", "location", "branches", "tag_pattern", "max_commits", "since", "protected_refs",
                  "trust_root", "expected_identity", "expected_identity_regexp", "expected_issuer",
                  "allowed_signers", "is_scheduled"]
        widgets = {"allowed_signers": forms.Textarea(attrs={"rows": 3}),
                   "since": forms.DateTimeInput(attrs={"type": "datetime-local"})}
