import hashlib
import json

from django.db import migrations, models


def fill_evidence_keys(apps, schema_editor):
    Evidence = apps.get_model("artifacts", "Evidence")
    for row in Evidence.objects.only("pk", "digest", "annotations").iterator():
        canonical = json.dumps({"digest": row.digest, "annotations": row.annotations or {}}, sort_keys=True,
                               separators=(",", ":"))
        Evidence.objects.filter(pk=row.pk).update(evidence_key=hashlib.sha256(canonical.encode()).hexdigest())


class Migration(migrations.Migration):
    dependencies = [("artifacts", "0003_fingerprint_sbom_tag_events")]

    operations = [
        migrations.RemoveConstraint(model_name="evidence", name="evidence_unique_per_artifact"),
        migrations.AddField(model_name="evidence", name="evidence_key", field=models.CharField(default="", max_length=64)),
        migrations.RunPython(fill_evidence_keys, migrations.RunPython.noop),
        migrations.AddConstraint(
            model_name="evidence",
            constraint=models.UniqueConstraint(fields=("artifact", "kind", "evidence_key"),
                                               name="evidence_unique_per_artifact"),
        ),
    ]
