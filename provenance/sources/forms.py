from __future__ import annotations

from django import forms

from provenance.sources.models import Source


class ImageSourceForm(forms.ModelForm):
    class Meta:
        model = Source
        fields = ["name", "location", "trust_root", "expected_identity", "expected_identity_regexp",
                  "expected_issuer", "is_insecure"]
        labels = {"location": "Image reference"}
