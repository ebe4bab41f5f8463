"""Identifier types shared across packages."""

from typing import NewType

DepartmentId = NewType("DepartmentId", str)
ClientId = NewType("ClientId", str)
TopicName = NewType("TopicName", str)
SchemaId = NewType("SchemaId", int)
Subject = NewType("Subject", str)
AgreementId = NewType("AgreementId", str)
SubjectRef = NewType("SubjectRef", str)
SubscriptionId = NewType("SubscriptionId", str)
