from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("audits", "0005_comparisons_parquet")]

    operations = [
        migrations.AddField(
            model_name="audit",
            name="identity_judge",
            field=models.JSONField(blank=True, default=dict),
        ),
    ]
